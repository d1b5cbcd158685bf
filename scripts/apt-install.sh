#!/usr/bin/env bash
# apt-install.sh PKG...: install the Debian packages among PKG that are not installed yet.
#
# A freshly booted Debian often runs unattended-upgrades, which holds the dpkg and apt locks for
# minutes; apt-get then fails at once ("Could not get lock /var/lib/dpkg/lock-frontend"). This
# waits for those locks instead (up to APT_LOCK_WAIT seconds, default 300), saying what holds
# them, and gives up with a clear error after that. Used by `make install` and the build scripts.
set -euo pipefail

WAIT=${APT_LOCK_WAIT:-300}
LOCKS=(/var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock /var/cache/apt/archives/lock)

missing=()
for p in "$@"; do
    [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

# holder LOCKFILE: "pid (command)" of a process holding an fcntl lock on the file, else nothing.
# dpkg and apt take POSIX record locks; F_GETLK asks without taking the lock.
holder() {
    python3 - "$1" <<'EOF'
import fcntl, os, struct, sys
try:
    fd = os.open(sys.argv[1], os.O_RDWR)
except OSError:
    sys.exit(0)
fmt = "hhqqi"  # struct flock: l_type, l_whence, l_start, l_len, l_pid
kind, _, _, _, pid = struct.unpack(fmt, fcntl.fcntl(fd, fcntl.F_GETLK, struct.pack(fmt, fcntl.F_WRLCK, 0, 0, 0, 0)))
if kind != fcntl.F_UNLCK:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = " ".join(f.read().decode(errors="replace").replace("\0", " ").split())
    except OSError:
        cmd = "?"
    print(f"{pid} ({cmd})")
EOF
}

wait_for_locks() {
    local deadline=$((SECONDS + WAIT)) said="" lock who
    while :; do
        who=""
        for lock in "${LOCKS[@]}"; do
            who=$(holder "$lock")
            [ -n "$who" ] && break
        done
        [ -z "$who" ] && return 0
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "apt-install: $lock is still held by pid $who after ${WAIT}s; giving up" >&2
            exit 1
        fi
        if [ "$said" != "$who" ]; then
            echo "apt-install: waiting up to ${WAIT}s for $lock (held by pid $who)" >&2
            said=$who
        fi
        sleep 2
    done
}

echo "installing Debian packages: ${missing[*]}"
# apt's own timeout covers a lock taken between our check and its start (install only: apt-get
# update does not wait), so wait before each step
wait_for_locks
apt-get -o DPkg::Lock::Timeout="$WAIT" update -qq
wait_for_locks
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout="$WAIT" install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null
