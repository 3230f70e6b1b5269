#!/usr/bin/env bash
# On the GPU machine: unpack the carried tritonserver (.whl-server/, made by prepare.sh) into /tmp/srv, once.
# A call that only runs in-process does not carry it; a later call on the same machine may.
set -euo pipefail
tarball=.whl-server/tritonserver-py3.12.tar.xz
if [ ! -x /tmp/srv/tritonserver/bin/tritonserver ] && [ -f "$tarball" ]; then
    mkdir -p /tmp/srv && tar -C /tmp/srv -xJf "$tarball"
fi
