#!/usr/bin/env bash
# Install Corral, build the offline 'tiny' template, start a container and show
# that it is its own server.  Run as root on Debian 12 / Ubuntu 22.04+.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/install.sh"
corral=/usr/local/bin/corral
name=${1:-demo1}
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step $corral template build tiny
if $corral info "$name" >/dev/null 2>&1; then
    step $corral destroy --force "$name"
fi
step $corral create "$name" --template tiny --hostname "$name.example" --start
sleep 0.3   # let busybox init run its start-up scripts
step $corral list
step $corral exec "$name" -- hostname
step $corral exec "$name" -- ps -o pid,user,args          # PID 1 is its own init
step $corral exec "$name" -- cat /proc/1/cmdline
echo
step $corral exec "$name" -- cat /proc/self/uid_map          # root inside, an unprivileged id outside
step $corral exec "$name" -- ip -o link                     # its own network namespace
step $corral exec "$name" -- sh -c 'mount | head -n 8'      # its own mounts, overlay root
step $corral exec "$name" -- sh -c 'echo hello > /root/mine; ls -l /root/mine'
echo "the shared template is untouched:"
ls /var/lib/corral/templates/tiny/rootfs/root/
step $corral info "$name"
echo
echo "Try: corral enter $name    |    corral stop $name    |    corral destroy $name"
