"""govlake's own Trino plugins (``trino-plugins/<name>/``), built from source.

Each plugin is compiled with the JDK Trino runs on (``trino.find_java``:
Temurin 25 carries ``javac``) against the server's own jars (``<server>/lib``: the SPI,
Slice, Jackson's annotations), so it needs nothing from a registry and always
matches the server it loads into. The jar goes to ``<server>/plugin/<name>/``
with the sha256 of its sources beside it; a build is skipped while that
digest and the server version stay the same.

- ``govlake-verify``: the ``verify`` catalog's table functions, one per
  verification check (docs/verification.md, pipelines/serving/verifier.py).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

from pipelines.settings import PROJECT_ROOT

log = logging.getLogger(__name__)
PLUGIN_SOURCES = PROJECT_ROOT / "trino-plugins"
STAMP = ".govlake-source-sha256"


def source_digest(source: Path, trino_version: str) -> str:
    """sha256 over the plugin's files (relative paths and bytes) and the Trino version."""
    digest = hashlib.sha256(f"trino {trino_version}\n".encode())
    for path in sorted(p for p in (source / "src").rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(source)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


class PluginBuildError(RuntimeError):
    """A plugin cannot be built; the message says what javac said or what to install."""


def build_plugin(source: Path, server: Path, java_home: Path, release: int, trino_version: str) -> Path:
    """Compile ``source`` (a folder with ``src/main/java`` and ``src/main/resources``)
    for Java ``release`` into ``<server>/plugin/<source.name>/<source.name>.jar``,
    unless the jar there was built from the same sources; returns the plugin folder."""
    target = server / "plugin" / source.name
    digest = source_digest(source, trino_version)
    stamp = target / STAMP
    if stamp.is_file() and stamp.read_text().strip() == digest and (target / f"{source.name}.jar").is_file():
        return target
    javac = java_home / "bin" / "javac"
    if not javac.is_file():
        raise PluginBuildError(f"{java_home} has no javac: the {source.name} Trino plugin is built from source "
                               "(install a JDK, e.g. Temurin 25, not a JRE)")
    with tempfile.TemporaryDirectory(prefix=f"{source.name}-") as scratch:
        classes = Path(scratch) / "classes"
        sources = sorted(str(p) for p in (source / "src" / "main" / "java").rglob("*.java"))
        completed = subprocess.run(
            [str(javac), "--release", str(release), "-encoding", "UTF-8", "-nowarn", "-d", str(classes),
             "-cp", str(server / "lib" / "*"), *sources], capture_output=True, text=True, check=False)
        if completed.returncode != 0:
            raise PluginBuildError(f"javac could not build the {source.name} Trino plugin:\n"
                                   f"{(completed.stdout + completed.stderr)[-3000:]}")
        resources = source / "src" / "main" / "resources"
        if resources.is_dir():
            shutil.copytree(resources, classes, dirs_exist_ok=True)
        partial = Path(scratch) / f"{source.name}.jar"
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as jar:
            jar.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\r\nCreated-By: govlake\r\n\r\n")
            for path in sorted(p for p in classes.rglob("*") if p.is_file()):
                jar.write(path, path.relative_to(classes).as_posix())
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        shutil.copy2(partial, target / partial.name)
    stamp.write_text(digest + "\n")
    log.info("built the %s Trino plugin into %s", source.name, target)
    return target


def build_plugins(server: Path, java_home: Path, release: int, trino_version: str) -> list[Path]:
    """Every plugin under ``trino-plugins/``, built if its sources changed."""
    return [build_plugin(source, server, java_home, release, trino_version)
            for source in sorted(PLUGIN_SOURCES.iterdir()) if (source / "src" / "main" / "java").is_dir()]
