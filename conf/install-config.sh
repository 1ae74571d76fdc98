#!/bin/sh
# meson install script: copies an example config to its place under /etc unless a file is already there
# (an operator's config survives `meson install` of a newer version). DESTDIR staging (tools/package.sh)
# starts empty, so the package always carries the example; dpkg then keeps edited copies as conffiles.
#   install-config.sh SOURCE DIR   (DIR relative to the prefix, or absolute)
set -eu
src=$1 dir=$2
case "$dir" in
    /*) ;;
    *) dir=$MESON_INSTALL_PREFIX/$dir ;;
esac
target=${DESTDIR:-}$dir/$(basename "$src")
if [ -e "$target" ]; then
    echo "keeping $target (already there; the example is in the package's share/understudy/examples)"
    exit 0
fi
install -D -m 0644 "$src" "$target"
echo "installed $target"
