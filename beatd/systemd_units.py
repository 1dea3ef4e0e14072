"""systemd unit files for beatd, rendered for the path of the installed ``beatd`` command.

``systemd/`` in the repository holds them rendered for ``/usr/local/bin/beatd``; ``beatd install-systemd``
writes them for the real path. Hardened so that ``systemd-analyze security`` rates each 2.0 or lower.
"""

from __future__ import annotations

__all__ = ["UNIT_NAMES", "render_units", "render_user_units"]

UNIT_NAMES = ("beatd-beat.service", "beatd-worker@.service", "beatd.target")

_HARDENING = """\
# Sandbox: a dedicated unprivileged user, a read-only system, nothing beyond what a Python network daemon needs.
DynamicUser=yes
StateDirectory=beatd
WorkingDirectory=/var/lib/beatd
UMask=0077
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
PrivateUsers=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
ProcSubset=pid
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
RemoveIPC=yes
DevicePolicy=closed
KeyringMode=private
CapabilityBoundingSet=
AmbientCapabilities=
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
SystemCallErrorNumber=EPERM
IPAddressDeny=any
IPAddressAllow=localhost
# Redis on another host: add its address, e.g. in a drop-in: IPAddressAllow=10.0.0.5
"""

_BEAT = """\
[Unit]
Description=beatd beat replica: elects a leader and emits each due fire exactly once
Documentation=https://github.com/beatd/beatd#readme
Wants=network-online.target
After=network-online.target
PartOf=beatd.target

[Service]
Type=notify
NotifyAccess=main
ExecStart={beatd} beat -c /etc/beatd/beatd.yaml --log-format text
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=2s
WatchdogSec=30s
TimeoutStopSec=30s
# Secrets (the Redis password, the signing key) as KEY=value lines, readable by root only.
EnvironmentFile=-/etc/beatd/beatd.env
{hardening}
[Install]
WantedBy=beatd.target
"""

_WORKER = """\
[Unit]
Description=beatd worker %i: runs the fires of the queues
Documentation=https://github.com/beatd/beatd#readme
Wants=network-online.target
After=network-online.target
PartOf=beatd.target

[Service]
Type=notify
NotifyAccess=main
ExecStart={beatd} worker -c /etc/beatd/beatd.yaml --log-format text
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=2s
WatchdogSec=60s
# SIGTERM drains: running jobs get worker.grace (30 s by default) before they are left to be reclaimed.
TimeoutStopSec=90s
KillMode=mixed
EnvironmentFile=-/etc/beatd/beatd.env
{hardening}
[Install]
WantedBy=beatd.target
"""

_TARGET = """\
[Unit]
Description=beatd: the beat and its workers
Documentation=https://github.com/beatd/beatd#readme
Wants=beatd-beat.service beatd-worker@1.service

[Install]
WantedBy=multi-user.target
"""


def render_units(beatd: str) -> dict[str, str]:
    """Unit file name -> text, with ExecStart running ``beatd`` (an absolute path)."""
    return {
        "beatd-beat.service": _BEAT.format(beatd=beatd, hardening=_HARDENING),
        "beatd-worker@.service": _WORKER.format(beatd=beatd, hardening=_HARDENING),
        "beatd.target": _TARGET,
    }


_USER_SERVICE = """\
[Unit]
Description=beatd {kind}{instance} (user service)
Documentation=https://github.com/beatd/beatd#readme
PartOf=beatd.target

[Service]
Type=notify
NotifyAccess=main
ExecStart={beatd} {kind} -c %h/.config/beatd/beatd.yaml
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=2s
WatchdogSec={watchdog}
TimeoutStopSec=90s
EnvironmentFile=-%h/.config/beatd/beatd.env
NoNewPrivileges=yes
UMask=0077

[Install]
WantedBy=beatd.target
"""


def render_user_units(beatd: str) -> dict[str, str]:
    """The same units for ``systemctl --user`` (no system sandbox; config in ~/.config/beatd)."""
    return {
        "beatd-beat.service": _USER_SERVICE.format(kind="beat", instance="", beatd=beatd, watchdog="30s"),
        "beatd-worker@.service": _USER_SERVICE.format(kind="worker", instance=" %i", beatd=beatd, watchdog="60s"),
        "beatd.target": _TARGET.replace("multi-user.target", "default.target"),
    }
