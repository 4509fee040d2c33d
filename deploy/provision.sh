#!/usr/bin/env bash
# Installs and enrols one edgepool worker: binary, systemd unit, config, wallet, service.
#
#   provision.sh --broker URL --pool 0xADDR --scheduler 0xADDR --password-file FILE
#                [--tags gpu] [--slots N] [--binary PATH] [--root DIR] [--no-start]
#
# Idempotent: a second run changes only what differs (the wallet key is never replaced, an
# existing /etc/edgepool/agent.toml is kept). Needs root, except with --root.
#
# --root DIR  scratch-root mode: everything goes under DIR (DIR/usr/bin, DIR/etc/systemd/system,
#             DIR/etc/edgepool, DIR/var/lib/edgepool) and the steps that change the machine itself
#             (useradd, chown, runuser, systemctl) are printed instead of run. For tests and for
#             building images.
# --no-start  install and enrol, but do not enable or start the service.
#
# Exit codes: 0 done; 2 invalid usage; 1 a step failed (its message says which).

set -euo pipefail

readonly SERVICE=edgepool-agent
readonly USER_NAME=edgepool
script_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
readonly script_dir

usage() {
    sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

die() {
    echo "provision.sh: error: $*" >&2
    exit 1
}

log() {
    echo "provision.sh: $*"
}

binary=""
broker=""
pool=""
scheduler=""
password_file=""
tags=""
slots=""
root=""
start=1

while [[ $# -gt 0 ]]; do
    case "$1" in
        --binary | --broker | --pool | --scheduler | --password-file | --tags | --slots | --root)
            [[ $# -ge 2 ]] || { echo "provision.sh: $1 needs a value" >&2; usage; }
            case "$1" in
                --binary) binary=$2 ;;
                --broker) broker=$2 ;;
                --pool) pool=$2 ;;
                --scheduler) scheduler=$2 ;;
                --password-file) password_file=$2 ;;
                --tags) tags=$2 ;;
                --slots) slots=$2 ;;
                --root) root=$2 ;;
            esac
            shift 2
            ;;
        --no-start)
            start=0
            shift
            ;;
        -h | --help) usage ;;
        *)
            echo "provision.sh: unknown argument $1" >&2
            usage
            ;;
    esac
done

for required in broker pool scheduler password_file; do
    if [[ -z "${!required}" ]]; then
        echo "provision.sh: --${required//_/-} is required" >&2
        usage
    fi
done
[[ -r "$password_file" ]] || die "cannot read the password file $password_file"
[[ -s "$password_file" ]] || die "the password file $password_file is empty"

if [[ -z "$binary" ]]; then
    if [[ -x "$script_dir/$SERVICE" ]]; then
        binary="$script_dir/$SERVICE"
    elif command -v "$SERVICE" > /dev/null; then
        binary=$(command -v "$SERVICE")
    else
        die "no $SERVICE next to this script or on PATH: pass --binary PATH"
    fi
fi
[[ -x "$binary" ]] || die "the binary $binary is not executable"
unit_source="$script_dir/$SERVICE.service"
[[ -r "$unit_source" ]] || die "cannot read the unit $unit_source"

if [[ -n "$root" ]]; then
    mkdir -p -- "$root"
    root=$(cd -- "$root" && pwd)
    scratch=1
else
    [[ $(id -u) -eq 0 ]] || die "run as root (or use --root DIR for a scratch root)"
    scratch=0
fi

bin_path="$root/usr/bin/$SERVICE"
unit_path="$root/etc/systemd/system/$SERVICE.service"
config_dir="$root/etc/edgepool"
config_path="$config_dir/agent.toml"
credential_path="$config_dir/keystore-password"
state_dir="$root/var/lib/edgepool"
udev_path="$root/etc/udev/rules.d/60-edgepool-tee.rules"

# Runs "$@" in real mode; in scratch-root mode prints it instead.
machine() {
    if [[ $scratch -eq 1 ]]; then
        log "would run: $*"
    else
        "$@"
    fi
}

# Copies $2 to $3 with mode $1 unless $3 already has the same bytes and mode; sets `changed`
# to 1 when it wrote the file.
changed=0
install_file() {
    local mode=$1 source=$2 target=$3
    changed=0
    if [[ -f "$target" ]] && cmp -s -- "$source" "$target" \
        && [[ $(stat -c %a -- "$target") == "${mode#0}" ]]; then
        log "unchanged: $target"
        return 0
    fi
    install -D -m "$mode" -- "$source" "$target" || die "cannot install $target"
    changed=1
    log "installed: $target"
}

# 1. Files. A new binary or unit means a restart of a running service; a new unit or udev rule
#    means a reload.
reload=0
restart=0
install_file 0755 "$binary" "$bin_path"
restart=$((restart | changed))
install_file 0644 "$unit_source" "$unit_path"
reload=$((reload | changed))
restart=$((restart | changed))
if [[ -r "$script_dir/60-edgepool-tee.rules" ]]; then
    install_file 0644 "$script_dir/60-edgepool-tee.rules" "$udev_path"
    udev_changed=$changed
else
    udev_changed=0
fi
mkdir -p -- "$config_dir"
chmod 0755 -- "$config_dir"
# The keystore password, for LoadCredential=: root-only, the agent never reads this file.
install_file 0600 "$password_file" "$credential_path"
restart=$((restart | changed))

# 2. The service user and its state directory (0700).
if [[ $scratch -eq 1 ]]; then
    machine useradd --system --no-create-home --shell /usr/sbin/nologin "$USER_NAME"
elif id -u "$USER_NAME" > /dev/null 2>&1; then
    log "unchanged: user $USER_NAME"
else
    useradd --system --no-create-home --home-dir /var/lib/edgepool \
        --shell /usr/sbin/nologin "$USER_NAME"
    log "created: user $USER_NAME"
fi
mkdir -p -- "$state_dir"
chmod 0700 -- "$state_dir"
machine chown "$USER_NAME:$USER_NAME" "$state_dir"

# 3. The wallet and the config: `init` keeps an existing key and an existing config.
init_args=(init --json --state-dir "$state_dir" --broker "$broker" --pool "$pool"
    --scheduler "$scheduler")
if [[ -n "$tags" ]]; then init_args+=(--tags "$tags"); fi
if [[ -n "$slots" ]]; then init_args+=(--slots "$slots"); fi

if [[ $scratch -eq 1 ]]; then
    log "would run init as $USER_NAME; running it as $(id -un) instead"
    "$bin_path" "${init_args[@]}" --config "$config_path" --password-file "$credential_path"
else
    # `init` runs as the service user, so the keystore is created by its owner. That user can
    # neither read the root-only password copy nor write /etc/edgepool, so init gets a private
    # staging directory with a readable password copy and the current config (if any), and the
    # config it writes is installed into /etc/edgepool afterwards.
    staging=$(mktemp -d)
    trap 'rm -rf -- "$staging"' EXIT
    chown "$USER_NAME:$USER_NAME" "$staging"
    chmod 0700 "$staging"
    install -m 0600 -o "$USER_NAME" -g "$USER_NAME" -- "$credential_path" "$staging/password"
    if [[ -f "$config_path" ]]; then
        install -m 0600 -o "$USER_NAME" -g "$USER_NAME" -- "$config_path" "$staging/agent.toml"
    fi
    runuser -u "$USER_NAME" -- "$bin_path" "${init_args[@]}" \
        --config "$staging/agent.toml" --password-file "$staging/password"
    if [[ ! -f "$config_path" ]]; then
        install -m 0640 -o root -g "$USER_NAME" -- "$staging/agent.toml" "$config_path"
        log "installed: $config_path"
    fi
fi

# 4. Ownership and modes, whatever init or an earlier version left behind: the state directory
#    belongs to the service user alone; the config is root's, readable by the agent's group.
chmod 0700 -- "$state_dir"
machine chown -R "$USER_NAME:$USER_NAME" "$state_dir"
chmod 0640 -- "$config_path"
machine chown "root:$USER_NAME" "$config_path"

# 5. systemd and udev.
if [[ $udev_changed -eq 1 ]]; then
    machine udevadm control --reload
    machine udevadm trigger --subsystem-match=misc
fi
if [[ $reload -eq 1 ]]; then
    machine systemctl daemon-reload
fi
if [[ $start -eq 1 ]]; then
    if [[ $restart -eq 1 ]]; then
        # Restarts (drain, then the new version) only a service that is already running.
        machine systemctl try-restart "$SERVICE"
    fi
    machine systemctl enable --now "$SERVICE"
else
    log "not started (--no-start); to start: systemctl enable --now $SERVICE"
fi
log "done"
