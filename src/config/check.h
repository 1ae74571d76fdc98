// The semantic checks of a Config (config_check.cpp), for the reader to run on what it read with the lines
// it knows. Everyone else calls validate_config() and its siblings in config.h.
#pragma once

#include "core/config.h"
#include "core/config_diagnostics.h"

namespace understudy::config_detail {

void check_config(const Config &config, Report &report);

}  // namespace understudy::config_detail
