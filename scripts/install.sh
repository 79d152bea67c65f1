#!/usr/bin/env bash
# Install Corral and what it needs on Debian 12 / Ubuntu 22.04+ (run as root).
# Idempotent: a second run only checks.  Puts a virtual environment in
# ./.venv (Debian's own python3, not a pyenv shim: it starts ~3x faster) and
# links `corral` and `corrald` into /usr/local/bin.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
with_tests=0
[ "${1:-}" = "--test" ] && with_tests=1

if [ "$(id -u)" != 0 ]; then
    echo "install.sh: run as root (sudo $0)" >&2
    exit 1
fi

# debootstrap: debian-*/ubuntu-* templates; zstd: compressed imports and backups;
# btrfs-progs: O(1) snapshots when the state root is on btrfs; openssh-client:
# ssh-keygen makes a clone its own SSH host keys; gpg: checks Ubuntu's archive key.
pkgs=(python3 python3-venv busybox-static iproute2 nftables lxcfs e2fsprogs util-linux
      debootstrap zstd btrfs-progs openssh-client gpg)
if [ "$with_tests" = 1 ]; then
    # peers measured side by side in bench/, and tools the tests use
    # (gcc, libc6-dev: the isolation probe; util-linux-extra: fincore for bench/storage.py)
    pkgs+=(runc crun lxc rsync systemd-container gcc libc6-dev util-linux-extra)
fi
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "==> installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
    echo "==> creating $venv"
    /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip
fi
extra=""
[ "$with_tests" = 1 ] && extra="[test]"
echo "==> installing corral into $venv"
"$venv/bin/pip" install -q --disable-pip-version-check "$here$extra"
# A launcher without pip's wrapper overhead (see scripts/corral-launcher).
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
sed -e "s|@PYTHON@|$venv/bin/python|" -e "s|@SITE@|$site|" "$here/scripts/corral-launcher" \
    > "$venv/bin/corral.new"
chmod 755 "$venv/bin/corral.new"
mv "$venv/bin/corral.new" "$venv/bin/corral"
ln -sf "$venv/bin/corral" /usr/local/bin/corral
ln -sf "$venv/bin/corrald" /usr/local/bin/corrald 2>/dev/null || true
# Autostart at boot and clean shutdown (enabled when systemd runs this host).
install -m 644 "$here/scripts/corral.service" /etc/systemd/system/corral.service
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable corral.service >/dev/null 2>&1 || true
fi
echo "==> $("$venv/bin/corral" --version) installed (/usr/local/bin/corral)"
