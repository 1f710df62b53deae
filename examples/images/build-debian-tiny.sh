#!/bin/sh
# build-debian-tiny.sh OUT.img — the Debian tiny sample golden image (see build-debian-tiny.py).
exec /usr/bin/python3 "$(dirname "$0")/build-debian-tiny.py" "$@"
