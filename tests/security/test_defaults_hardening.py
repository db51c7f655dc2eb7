"""Hardened defaults, attacked as root inside a default Docker sandbox: the capabilities Docker grants
by default beyond a short allow-list are gone, setuid binaries cannot raise privileges, and the
workflows users expect (apt, pip, useradd + user=, chown) still work. Each loosening option is
shown to restore exactly what it names."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest

from sandboxkit import ErrorCode, Sandbox, SandboxError

pytestmark = pytest.mark.usefixtures("docker_engine")

#: capability(7) bit numbers of the default allow-list: CHOWN DAC_OVERRIDE FOWNER KILL SETGID SETUID
ALLOWED_BITS = {"CHOWN": 0, "DAC_OVERRIDE": 1, "FOWNER": 3, "KILL": 5, "SETGID": 6, "SETUID": 7}
RAW_ICMP = "import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); print('raw socket')"
MKNOD = "import os; os.mknod('/tmp/null2', 0o666 | 0o020000, os.makedev(1, 3)); print('device node')"
#: give a copy of `true` the file capability NET_RAW (a valid vfs_cap_data, revision 2)
SETCAP = (
    "import os, shutil, struct; shutil.copy('/bin/true', '/tmp/t');"
    "os.setxattr('/tmp/t', 'security.capability', struct.pack('<5I', 0x02000001, 1 << 13, 0, 0, 0))"
)
#: a root-owned setuid copy of `id`, run as an ordinary user: prints 0 only if setuid elevated it
SETUID_ID = "cp /usr/bin/id /usr/local/bin/suid-id && chmod 4755 /usr/local/bin/suid-id"


def _status(sb: Sandbox, field: str) -> str:
    out = sb.execute(f"grep '^{field}:' /proc/self/status", check=True).stdout
    return out.split(":", 1)[1].strip()


@pytest.fixture(scope="module")
def box() -> Iterator[Sandbox]:
    with Sandbox.create(timeout=600) as sb:
        yield sb


def test_root_keeps_only_the_allow_list_and_no_new_privileges(box: Sandbox) -> None:
    host_config: dict[str, Any] = box.instance.client.api.inspect_container(box.id)["HostConfig"]
    assert host_config["CapDrop"] == ["ALL"]
    assert sorted(host_config["CapAdd"]) == sorted(ALLOWED_BITS)
    assert host_config["SecurityOpt"] == ["no-new-privileges"]
    assert box.execute("id -u").stdout.strip() == "0"
    wanted = sum(1 << bit for bit in ALLOWED_BITS.values())
    assert int(_status(box, "CapEff"), 16) == wanted
    assert int(_status(box, "CapBnd"), 16) == wanted  # nothing left to regain, even by exec of a file with caps
    assert _status(box, "NoNewPrivs") == "1"


def test_raw_sockets_and_device_nodes_are_refused_to_root(box: Sandbox) -> None:
    raw = box.execute(["python3", "-c", RAW_ICMP])
    assert raw.exit_code != 0 and "Operation not permitted" in raw.stderr, raw.output
    node = box.execute(["python3", "-c", MKNOD])
    assert node.exit_code != 0 and "Operation not permitted" in node.stderr, node.output
    # and no file capability can be set (SETFCAP is gone)
    caps = box.execute(["python3", "-c", SETCAP])
    assert caps.exit_code != 0 and "Operation not permitted" in caps.stderr, caps.output


def test_a_setuid_root_binary_does_not_elevate_a_user(box: Sandbox) -> None:
    box.execute(f"id mallory || useradd mallory; {SETUID_ID}", check=True)
    assert box.execute("stat -c %a:%U /usr/local/bin/suid-id").stdout.strip() == "4755:root"
    result = box.execute(["/usr/local/bin/suid-id", "-u"], user="mallory", check=True)
    assert result.stdout.strip() != "0", "the setuid bit made the user root"
    assert box.execute(["su", "-c", "id -u"], user="mallory").exit_code != 0  # su cannot elevate either


def test_the_loosening_options_restore_what_they_name() -> None:
    loose = {"cap_add": ["NET_RAW", "cap_mknod"], "cap_drop": ["DAC_OVERRIDE"], "no_new_privileges": False}
    with Sandbox.create(provider_options=loose) as sb:
        assert "raw socket" in sb.execute(["python3", "-c", RAW_ICMP], check=True).stdout
        assert "device node" in sb.execute(["python3", "-c", MKNOD], check=True).stdout
        # without DAC_OVERRIDE root cannot write a file whose mode says no
        denied = sb.execute("echo x > /tmp/ro && chmod 444 /tmp/ro && echo y >> /tmp/ro")
        assert denied.exit_code != 0 and "Permission denied" in denied.stderr
        assert _status(sb, "NoNewPrivs") == "0"
        sb.execute(f"useradd mallory; {SETUID_ID}", check=True)
        # the control for the setuid test above: without no-new-privileges the bit does elevate
        assert sb.execute(["/usr/local/bin/suid-id", "-u"], user="mallory", check=True).stdout.strip() == "0"


@pytest.mark.parametrize(
    "options",
    [
        {"cap_add": ["NET_FOO"]},
        {"cap_add": "NET_RAW"},
        {"cap_add": ["NET_RAW"], "cap_drop": ["net_raw"]},
        {"no_new_privileges": "sometimes"},
        {"runtime": ""},
    ],
)
def test_bad_hardening_options_are_invalid_argument(options: dict[str, Any]) -> None:
    with pytest.raises(SandboxError) as err:
        Sandbox.create(provider_options=options)
    assert err.value.code == ErrorCode.INVALID_ARGUMENT


# ------------------------------------------------------------------ the workflows users expect


def test_apt_installs_a_local_deb(box: Sandbox) -> None:
    control = "Package: sk-hello\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@example.com>\nDescription: t\n"
    box.write_file("/tmp/pkg/DEBIAN/control", control.encode())
    box.write_file("/tmp/pkg/usr/share/sk-hello/greeting", b"hello\n")
    box.execute("dpkg-deb --build /tmp/pkg /tmp/sk-hello.deb", check=True)
    box.execute("DEBIAN_FRONTEND=noninteractive apt-get install -y /tmp/sk-hello.deb", check=True, timeout=120)
    assert box.execute("dpkg -s sk-hello | grep Status").stdout.strip() == "Status: install ok installed"
    assert box.read_file("/usr/share/sk-hello/greeting") == b"hello\n"


def _wheel() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as whl:
        whl.writestr("skdemo/__init__.py", "VALUE = 42\n")
        whl.writestr("skdemo-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: skdemo\nVersion: 1.0\n")
        wheel = "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        whl.writestr("skdemo-1.0.dist-info/WHEEL", wheel)
        whl.writestr("skdemo-1.0.dist-info/RECORD", "")
    return buf.getvalue()


def test_pip_installs_a_local_wheel(box: Sandbox) -> None:
    box.write_file("/tmp/skdemo-1.0-py3-none-any.whl", _wheel())
    box.execute(
        "pip install --no-index --break-system-packages /tmp/skdemo-1.0-py3-none-any.whl", check=True, timeout=120
    )
    assert box.execute(["python3", "-c", "import skdemo; print(skdemo.VALUE)"], check=True).stdout.strip() == "42"


def test_useradd_user_commands_and_chown(box: Sandbox) -> None:
    box.execute("useradd -m alice", check=True)
    assert box.execute("id -un", user="alice", check=True).stdout.strip() == "alice"
    box.execute("echo data > /tmp/owned && chown alice:alice /tmp/owned && chmod 600 /tmp/owned", check=True)
    assert box.execute("stat -c %U:%G /tmp/owned").stdout.strip() == "alice:alice"
    assert box.execute("cat /tmp/owned", user="alice", check=True).stdout.strip() == "data"
    # root still writes into the user's private home (DAC_OVERRIDE is on the allow-list)
    box.execute("chmod 700 /home/alice && echo from-root > /home/alice/note", check=True)
    # and root can stop the user's processes (KILL): the per-command tree kill relies on it
    killed = box.execute(
        "su alice -c 'exec sleep 300' & pid=$!; until pgrep -u alice sleep >/dev/null; do sleep 0.1; done; "
        "pkill -KILL -u alice sleep; wait $pid; echo rc=$?",
        timeout=60,
    )
    assert killed.stdout.strip().endswith("rc=137"), killed.output
