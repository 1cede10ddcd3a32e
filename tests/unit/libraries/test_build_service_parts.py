"""The build service's pure parts: fingerprints compared by part, where its
socket goes, a zombie is no running service, and a folder another user owns
is never used for the socket."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.libraries.service import ServiceError, _private_folder, differences, fingerprint, service_paths
from pipelines.processes import alive
from pipelines.settings import get_settings


def test_fingerprints_differ_by_the_part_that_changed(tmp_path):
    settings = dataclasses.replace(get_settings(), home=str(tmp_path / "lake"))
    ours = fingerprint(settings)
    assert differences(ours, dict(ours)) == []
    assert differences(ours, fingerprint(dataclasses.replace(settings, build_workers=7))) == ["settings"]
    assert differences(ours, ours | {"code": "0"}) == ["code"]
    assert differences(ours, None) == list(ours)        # a malformed request matches nothing


def test_the_socket_sits_in_the_lake_unless_its_path_is_too_long_for_a_socket(tmp_path):
    short = service_paths(dataclasses.replace(get_settings(), home="/srv/lake"))
    assert short.socket == Path("/srv/lake/state/build-service/socket")
    deep = tmp_path.joinpath(*["a-rather-long-folder-name"] * 5, "lake")
    far = service_paths(dataclasses.replace(get_settings(), home=str(deep)))
    assert far.pid_file == deep / "state" / "build-service" / "pid"
    assert len(str(far.socket)) <= 100 and far.socket.parent.name == f"govlake-{os.getuid()}"


def test_a_process_that_ended_uncollected_is_not_alive():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and alive(child.pid):    # ends, and stays a zombie until collected
        time.sleep(0.05)
    assert not alive(child.pid)
    child.wait()
    assert alive(os.getpid())


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a folder to another user")
def test_a_socket_folder_another_user_owns_is_refused(tmp_path):
    folder = tmp_path / "theirs"
    folder.mkdir()
    os.chown(folder, 65534, 65534)
    with pytest.raises(ServiceError, match="belongs to uid 65534"):
        _private_folder(folder)
    mine = tmp_path / "mine"
    _private_folder(mine)
    assert oct(mine.stat().st_mode & 0o777) == "0o700"
