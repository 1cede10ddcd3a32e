"""The project's Trino server: fetched, configured and run on 127.0.0.1 over HTTPS.

- **Fetch.** ``mvn dependency:copy`` of ``io.trino:trino-server:<version>:tar.gz``
  from Maven Central into ``<cache>/trino/``, unpacked once; plugins other than
  the ones govlake uses are removed. (The registry here serves
  ``trino-server-core:476`` but not the 476 plugin zips — ``trino-delta-lake``
  has only 449 — so the full server tarball of the same release is used; it
  carries every plugin.)
- **Java.** Trino 476 needs Java 24+: ``GOVLAKE_TRINO_JAVA_HOME`` or the newest
  suitable JDK under ``/usr/lib/jvm``.
- **Config** under ``GOVLAKE_TRINO_HOME`` (git-ignored): a coordinator bound to
  127.0.0.1 (and, with ``GOVLAKE_TRINO_WORKERS=N`` or ``govlake trino up
  --workers N``, N workers under ``worker-<i>/`` that run every split while
  the coordinator only plans; internal traffic over HTTPS with the shared
  secret, 0600), HTTPS only (a self-signed certificate generated at set-up; no HTTP
  port), password authentication (file authenticator, bcrypt; passwords
  generated into ``passwords.json``, mode 0600), file-based access control
  reloaded every few seconds, and the Delta Lake catalog ``lake`` on a file
  metastore under the lake root. Nobody may write table data through Trino:
  Spark is the only writer.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

from pipelines.processes import probe_service, running_pid, service_environment, stop_process_group
from pipelines.serving.audit import (VERIFY_PATH, listener_properties, receiver_port, start_receiver, stop_receiver,
                                     token_path)
from pipelines.serving.trino_plugins import PluginBuildError, build_plugins
from pipelines.settings import Settings, get_settings

log = logging.getLogger(__name__)

ADMIN_USER = "govlake"
CATALOG = "lake"
PLUGINS_KEPT = ("delta-lake", "password-authenticators", "http-event-listener")   # and govlake's own (trino_plugins)
VERIFY_CATALOG = "verify"
MIN_JAVA = 24
METASTORE_DIR = "_trino_metastore"   # under the lake root
JVM_ROOT = Path("/usr/lib/jvm")


class TrinoSetupError(RuntimeError):
    """Trino cannot be fetched, configured or started; the message says what to do."""


# --------------------------------------------------------------------------- java and binaries

def _java_major(java_home: Path) -> int | None:
    java = java_home / "bin" / "java"
    if not java.is_file():
        return None
    completed = subprocess.run([str(java), "-version"], capture_output=True, text=True)
    match = re.search(r'version "(\d+)', completed.stderr + completed.stdout)
    return int(match.group(1)) if match else None


def find_java(settings: Settings | None = None) -> Path:
    """A Java home with Java 24 or newer for Trino."""
    settings = settings or get_settings()
    if settings.trino_java_home:
        home = Path(settings.trino_java_home)
        major = _java_major(home)
        if major is None or major < MIN_JAVA:
            raise TrinoSetupError(f"GOVLAKE_TRINO_JAVA_HOME={home} is not a Java {MIN_JAVA}+ home "
                                  f"(found {'no java' if major is None else f'Java {major}'})")
        return home
    candidates = []
    if JVM_ROOT.is_dir():
        for home in JVM_ROOT.iterdir():
            major = _java_major(home) if home.is_dir() else None
            if major and major >= MIN_JAVA:
                candidates.append((major, home))
    if not candidates:
        raise TrinoSetupError(f"Trino {settings.trino_version} needs Java {MIN_JAVA} or newer; none found under "
                              f"{JVM_ROOT}. Install one (e.g. Temurin 25) or set GOVLAKE_TRINO_JAVA_HOME.")
    return max(candidates)[1]


def server_dir(settings: Settings | None = None) -> Path:
    settings = settings or get_settings()
    return Path(settings.cache_dir) / "trino" / f"trino-server-{settings.trino_version}"


def _mvn_copy(artifact: str, into: Path) -> subprocess.CompletedProcess:
    mvn = shutil.which("mvn")
    if not mvn:
        raise TrinoSetupError(f"`mvn` is needed once to fetch {artifact} from Maven Central")
    log.info("fetching %s with mvn", artifact)
    return subprocess.run([mvn, "-q", "-B", "dependency:copy", f"-Dartifact={artifact}", f"-DoutputDirectory={into}"],
                          capture_output=True, text=True, cwd=into, check=False)


def cli_jar(settings: Settings | None = None) -> Path:
    """Where the official Trino CLI (executable jar) is cached."""
    settings = settings or get_settings()
    return Path(settings.cache_dir) / "trino" / f"trino-cli-{settings.trino_version}-executable.jar"


def fetch_trino_cli(settings: Settings | None = None) -> Path:
    """Download (once) the official Trino CLI of the server's release,
    ``io.trino:trino-cli:<version>:jar:executable``; returns the jar. Run it
    with the Java ``find_java`` picks (see ``cli_command``)."""
    settings = settings or get_settings()
    jar = cli_jar(settings)
    if jar.is_file():
        return jar
    jar.parent.mkdir(parents=True, exist_ok=True)
    artifact = f"io.trino:trino-cli:{settings.trino_version}:jar:executable"
    completed = _mvn_copy(artifact, jar.parent)
    if completed.returncode != 0 or not jar.is_file():
        raise TrinoSetupError(f"mvn could not fetch {artifact}:\n{(completed.stdout + completed.stderr)[-2000:]}")
    return jar


def cli_command(user: str, settings: Settings | None = None, catalog: str = CATALOG) -> list[str]:
    """The Trino CLI command line for ``user`` over HTTPS with a password (the
    CLI reads it from ``TRINO_PASSWORD``). The truststore is the server's PEM
    certificate, with no truststore type: Java has no key-store type "PEM"."""
    settings = settings or get_settings()
    return [str(find_java(settings) / "bin" / "java"), "-jar", str(fetch_trino_cli(settings)),
            "--server", f"https://127.0.0.1:{settings.trino_port}",
            "--truststore-path", str(certificate_path(settings)),
            "--user", user, "--password", "--catalog", catalog]


def fetch_trino(settings: Settings | None = None) -> Path:
    """Download (once) and unpack the Trino server; returns its directory."""
    settings = settings or get_settings()
    target = server_dir(settings)
    if (target / ".govlake-ready").exists():
        return target
    cache = target.parent
    cache.mkdir(parents=True, exist_ok=True)
    tarball = cache / f"trino-server-{settings.trino_version}.tar.gz"
    if not tarball.exists():
        artifact = f"io.trino:trino-server:{settings.trino_version}:tar.gz"
        completed = _mvn_copy(artifact, cache)
        if completed.returncode != 0 or not tarball.exists():
            raise TrinoSetupError(f"mvn could not fetch {artifact}:\n{(completed.stdout + completed.stderr)[-2000:]}")
    partial = cache / f".unpack-{settings.trino_version}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    with tarfile.open(tarball) as archive:
        archive.extractall(partial, filter="tar")
    unpacked = partial / f"trino-server-{settings.trino_version}"
    for plugin in (unpacked / "plugin").iterdir():
        if plugin.name not in PLUGINS_KEPT:
            shutil.rmtree(plugin)
    shutil.rmtree(target, ignore_errors=True)
    unpacked.replace(target)
    shutil.rmtree(partial, ignore_errors=True)
    tarball.unlink()  # ~800 MB; the unpacked server is what we keep
    (target / ".govlake-ready").touch()
    return target


# --------------------------------------------------------------------------- configuration

def _etc(settings: Settings) -> Path:
    return Path(settings.trino_home) / "etc"


def certificate_path(settings: Settings | None = None) -> Path:
    """The server's self-signed certificate (PEM): clients verify against it."""
    settings = settings or get_settings()
    return _etc(settings) / "govlake-trino.crt"


def _write_certificate(settings: Settings) -> None:
    """A self-signed certificate for 127.0.0.1/localhost, with its key, once."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    keystore = _etc(settings) / "govlake-trino.pem"
    if keystore.exists() and certificate_path(settings).exists():
        return
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "govlake (self-signed, loopback only)")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
    keystore.write_bytes(key_pem + cert_pem)
    keystore.chmod(0o600)
    certificate_path(settings).write_bytes(cert_pem)


def _passwords_path(settings: Settings) -> Path:
    return Path(settings.trino_home) / "passwords.json"


def trino_users(settings: Settings | None = None) -> list[str]:
    """The platform administrator plus every department user in the catalog."""
    settings = settings or get_settings()
    users = [ADMIN_USER]
    departments = Path(settings.catalog_dir) / "departments.yaml"
    if departments.is_file():
        import yaml

        document = yaml.safe_load(departments.read_text(encoding="utf-8")) or {}
        for department in document.get("departments", []):
            users += [user["name"] for user in department.get("users", [])]
    return users


def ensure_passwords(settings: Settings | None = None) -> dict[str, str]:
    """Generate a password for every user that has none (kept in the git-ignored
    ``passwords.json``) and write Trino's bcrypt password file."""
    import bcrypt

    settings = settings or get_settings()
    path = _passwords_path(settings)
    passwords = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    changed = False
    for user in trino_users(settings):
        if user not in passwords:
            passwords[user] = secrets.token_urlsafe(18)
            changed = True
    if changed or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(passwords, indent=2), encoding="utf-8")
        path.chmod(0o600)
    lines = []
    for user, password in sorted(passwords.items()):
        digest = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode()
        lines.append(f"{user}:{digest.replace('$2b$', '$2y$', 1)}")
    password_db = _etc(settings) / "password.db"
    password_db.parent.mkdir(parents=True, exist_ok=True)
    password_db.write_text("\n".join(lines) + "\n", encoding="utf-8")
    password_db.chmod(0o600)
    return passwords


def password_for(user: str, settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    passwords = json.loads(_passwords_path(settings).read_text(encoding="utf-8"))
    if user not in passwords:
        raise KeyError(f"no Trino user {user}; users: {', '.join(sorted(passwords))}")
    return passwords[user]


def keeper_pid_file(settings: Settings | None = None) -> Path:
    """Where the rules keeper (``pipelines.serving.keeper``) keeps its pid."""
    settings = settings or get_settings()
    return Path(settings.trino_home) / "keeper.pid"


def rules_path(settings: Settings | None = None) -> Path:
    settings = settings or get_settings()
    return _etc(settings) / "rules.json"


def base_rules(owned: list[tuple[str, str]] = ()) -> dict:
    """Access rules before any grant: nobody writes data; everyone but the
    administrator sees nothing. The administrator (the account ``govlake
    publish`` uses) reads everything and owns exactly the ``owned`` tables and
    views, which registering and creating views need; any other name cannot
    be created, so no CTAS can leave data in the lake through Trino.

    Beyond tables:
    - queries: a user sees and cancels only their own queries (Trino always
      allows that); only the administrator sees or cancels anyone's, since a
      query's text carries the ID numbers it looks up; governors read who ran
      what in ``governance.query_audit`` instead, with those numbers masked;
    - system information (``/v1/node``, ``/v1/thread``, JMX): the administrator;
    - impersonation (``X-Trino-User`` other than the login): nobody;
    - system and catalog session properties: the administrator only;
    - procedures, table procedures (``ALTER TABLE ... EXECUTE``), functions'
      ownership and authorization changes: the administrator only;
    - functions: the built-in ones, and the ``verify`` catalog's table
      functions (verification, 核验) for every user: each question is
      answered or refused, and logged, by the service behind them; no other
      catalog's table functions (``lake.system.table_changes`` would read
      a table's changes around its rules)."""
    admin = f"^{ADMIN_USER}$"
    admin_tables = [{"user": admin, "catalog": CATALOG, "schema": f"^{schema}$", "table": f"^{table}$",
                     "privileges": ["SELECT", "OWNERSHIP", "GRANT_SELECT"]} for schema, table in owned]
    return {
        "catalogs": [{"user": admin, "catalog": ".*", "allow": "all"},
                     {"catalog": CATALOG, "allow": "read-only"},
                     {"catalog": "system", "allow": "read-only"},
                     {"catalog": VERIFY_CATALOG, "allow": "read-only"}],
        "functions": [{"catalog": "system", "schema": "builtin", "privileges": ["EXECUTE"]},
                      {"catalog": VERIFY_CATALOG, "schema": "system", "privileges": ["EXECUTE"]}],
        "schemas": [{"user": admin, "owner": True}, {"owner": False}],
        "queries": [{"user": admin, "allow": ["execute", "kill", "view"]},
                    {"allow": ["execute"]}],
        "system_information": [{"user": admin, "allow": ["read", "write"]}],
        "impersonation": [{"original_user": ".*", "new_user": ".*", "allow": False}],
        "system_session_properties": [{"user": admin, "property": ".*", "allow": True},
                                      {"property": ".*", "allow": False}],
        "catalog_session_properties": [{"user": admin, "catalog": ".*", "property": ".*", "allow": True},
                                       {"catalog": ".*", "property": ".*", "allow": False}],
        "procedures": [{"user": admin, "catalog": CATALOG, "schema": "system", "procedure": ".*",
                        "privileges": ["EXECUTE"]}],
        "authorization": [{"original_user": admin, "new_user": ".*", "allow": True},
                          {"original_user": ".*", "new_user": ".*", "allow": False}],
        "tables": admin_tables + [{"user": admin, "privileges": ["SELECT", "GRANT_SELECT"]}],
    }


def write_config(settings: Settings | None = None) -> Path:
    """Write Trino's etc/ (idempotent; keeps certificate, passwords and rules)."""

    settings = settings or get_settings()
    etc = _etc(settings)
    (etc / "catalog").mkdir(parents=True, exist_ok=True)
    # the catalog needs the lake root and its metastore folder to exist, even
    # before anything was ingested
    settings.local_lake_path(METASTORE_DIR).mkdir(parents=True, exist_ok=True)
    data = Path(settings.trino_home) / "data"
    data.mkdir(parents=True, exist_ok=True)
    _write_certificate(settings)
    secret_file = etc / ".shared-secret"
    if not secret_file.exists():
        secret_file.write_text(secrets.token_hex(32))
        secret_file.chmod(0o600)
    keystore = etc / "govlake-trino.pem"
    lake_catalog = [
        "connector.name=delta_lake", "hive.metastore=file",
        f"hive.metastore.catalog.dir=local:///{METASTORE_DIR}",
        "fs.native-local.enabled=true", f"local.location={settings.local_lake_path()}",
        "delta.register-table-procedure.enabled=true",
        # Delta metadata caching (issue 15): each table's parsed log (its
        # snapshot) and its active-file list are kept between queries, so a
        # point lookup does not re-read checkpoints and commits. Every query
        # still reads the log entries newer than the cached version
        # (TransactionLogAccess: a cached snapshot is brought up to date
        # before use), so a version written by Spark or delta-rs is seen at
        # once (tests/integration/test_trino.py reads right after a write).
        "delta.metadata.cache-ttl=30m", "delta.metadata.cache-max-retained-size=64MB",
        "delta.metadata.live-files.cache-ttl=30m", "delta.metadata.live-files.cache-size=128MB",
        "delta.checkpoint-filtering.enabled=true",
        # Table statistics would give a town-scoped user plan estimates and
        # SHOW STATS figures of the whole table, outside its row filter.
        "delta.table-statistics-enabled=false", "delta.extended-statistics.enabled=false"]
    port = settings.trino_port
    files = {
        "node.properties": [
            "node.environment=govlake", "node.id=govlake-coordinator-1", f"node.data-dir={data}",
            "node.bind-ip=127.0.0.1", "node.internal-address=127.0.0.1"],
        "jvm.config": [
            "-server", f"-Xmx{settings.trino_heap}", "-XX:+UseG1GC", "-XX:+ExitOnOutOfMemoryError",
            "-XX:+HeapDumpOnOutOfMemoryError", "-Djdk.attach.allowAttachSelf=true", "-Dfile.encoding=UTF-8"],
        "config.properties": [
            # with workers, the coordinator plans and schedules only
            "coordinator=true", f"node-scheduler.include-coordinator={str(not settings.trino_workers).lower()}",
            "http-server.http.enabled=false",
            # no web UI: one surface fewer (the REST API and the CLI remain)
            "web-ui.enabled=false",
            "http-server.https.enabled=true", f"http-server.https.port={port}",
            f"http-server.https.keystore.path={keystore}",
            "http-server.authentication.type=PASSWORD",
            f"discovery.uri=https://127.0.0.1:{port}",
            f"internal-communication.shared-secret={secret_file.read_text().strip()}",
            "internal-communication.https.required=true",
            f"internal-communication.https.keystore.path={keystore}",
            f"internal-communication.https.truststore.path={certificate_path(settings)}",
            "query.max-memory=2GB", "query.max-memory-per-node=1GB",
            f"event-listener.config-files={etc / 'http-event-listener.properties'}"],
        "http-event-listener.properties": listener_properties(settings),
        "password-authenticator.properties": [
            "password-authenticator.name=file", f"file.password-file={etc / 'password.db'}",
            "file.refresh-period=5s"],
        "access-control.properties": [
            "access-control.name=file", f"security.config-file={rules_path(settings)}",
            "security.refresh-period=5s"],
        "log.properties": ["io.trino=INFO"],
        # verification (核验) as table functions: answered by the audit receiver's /verify
        # (pipelines/serving/verifier.py), which holds the token this file names (0600)
        f"catalog/{VERIFY_CATALOG}.properties": [
            "connector.name=govlake_verify",
            f"govlake.verify.endpoint=http://127.0.0.1:{receiver_port(settings)}{VERIFY_PATH}",
            f"govlake.verify.token-file={token_path(settings)}"],
        "catalog/lake.properties": lake_catalog,
    }
    etc.chmod(0o700)
    _write_files(etc, files)
    for index in range(1, settings.trino_workers + 1):
        _write_worker_config(settings, index, keystore, secret_file.read_text().strip(),
                             {name: lines for name, lines in files.items() if name.startswith("catalog/")})
    ensure_passwords(settings)
    if not rules_path(settings).exists():   # the administrator only, until `govlake access compile`
        write_rules(base_rules(), settings)
    return etc


def worker_home(settings: Settings, index: int) -> Path:
    """Worker ``index`` (from 1): its etc/, data/, server.log and pid file."""
    return Path(settings.trino_home) / f"worker-{index}"


def worker_port(settings: Settings, index: int) -> int:
    return settings.trino_port + 10 + index


def _write_worker_config(settings: Settings, index: int, keystore: Path, secret: str,
                         catalogs: dict[str, list[str]]) -> None:
    """A worker's etc/: the coordinator's catalogs (the same lake, the verify
    connector), HTTPS on its own port with the coordinator's certificate, and
    the internal shared secret (0600). No client logs in at a worker (a
    password file nobody knows a password of); no rules or event listener:
    clients, access control and the audit stay on the coordinator."""
    home = worker_home(settings, index)
    etc = home / "etc"
    (etc / "catalog").mkdir(parents=True, exist_ok=True)
    (home / "data").mkdir(parents=True, exist_ok=True)
    port = worker_port(settings, index)
    files = {
        "node.properties": [
            "node.environment=govlake", f"node.id=govlake-worker-{index}", f"node.data-dir={home / 'data'}",
            "node.bind-ip=127.0.0.1", "node.internal-address=127.0.0.1"],
        "jvm.config": [
            "-server", f"-Xmx{settings.trino_worker_heap}", "-XX:+UseG1GC", "-XX:+ExitOnOutOfMemoryError",
            "-Djdk.attach.allowAttachSelf=true", "-Dfile.encoding=UTF-8"],
        "config.properties": [
            "coordinator=false", "http-server.http.enabled=false",
            "http-server.https.enabled=true", f"http-server.https.port={port}",
            f"http-server.https.keystore.path={keystore}",
            # nobody logs in at a worker (its password file holds one account whose
            # password was thrown away): its REST and management endpoints refuse
            # every client; the coordinator reaches it with the internal secret
            "http-server.authentication.type=PASSWORD",
            f"discovery.uri=https://127.0.0.1:{settings.trino_port}",
            f"internal-communication.shared-secret={secret}",
            "internal-communication.https.required=true",
            f"internal-communication.https.keystore.path={keystore}",
            f"internal-communication.https.truststore.path={certificate_path(settings)}",
            "query.max-memory=2GB", "query.max-memory-per-node=1GB"],
        "log.properties": ["io.trino=INFO"],
        "password-authenticator.properties": [
            "password-authenticator.name=file", f"file.password-file={etc / 'password.db'}"],
        **catalogs,
    }
    home.chmod(0o700)
    etc.chmod(0o700)
    _write_files(etc, files)
    password_db = etc / "password.db"
    if not password_db.exists():
        import bcrypt

        password_db.touch(mode=0o600)
        unknowable = bcrypt.hashpw(secrets.token_bytes(32).hex().encode(), bcrypt.gensalt(rounds=10)).decode()
        password_db.write_text(f"no-login-at-a-worker:{unknowable}\n", encoding="utf-8")


def _write_files(etc: Path, files: dict[str, list[str]]) -> None:
    for name, lines in files.items():
        path = etc / name
        path.touch(mode=0o600)
        path.chmod(0o600)    # config.properties holds the internal shared secret, the listener's file a token
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_rules(rules: dict, settings: Settings | None = None) -> Path:
    """Replace the access rules atomically (Trino reloads them within seconds)."""
    path = rules_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.partial")
    partial.touch(mode=0o600)
    partial.write_text(json.dumps(rules, ensure_ascii=False, indent=2), encoding="utf-8")
    partial.replace(path)
    return path


# --------------------------------------------------------------------------- the server process

def _pid_file(settings: Settings) -> Path:
    return Path(settings.trino_home) / "trino.pid"


def connect(user: str = ADMIN_USER, password: str | None = None, settings: Settings | None = None,
            catalog: str = CATALOG, schema: str | None = None, max_attempts: int = 3, source: str | None = None):
    """A DB-API connection to the project's Trino over HTTPS with a password;
    ``source`` names the client in the query audit (``query_audit.source``)."""
    import requests
    import trino
    from trino.auth import BasicAuthentication

    settings = settings or get_settings()
    session = requests.Session()
    session.trust_env = False   # a CA bundle from the environment must not replace our certificate
    session.verify = str(certificate_path(settings))
    return trino.dbapi.connect(
        host="127.0.0.1", port=settings.trino_port, user=user, catalog=catalog, schema=schema,
        http_scheme="https", auth=BasicAuthentication(user, password or password_for(user, settings)),
        http_session=session, request_timeout=120, max_attempts=max_attempts,
        **({"source": source} if source else {}))


def query(sql: str, user: str = ADMIN_USER, password: str | None = None, settings: Settings | None = None,
          max_attempts: int = 3):
    """Run one statement; returns (column names, rows)."""
    connection = connect(user, password, settings, max_attempts=max_attempts)
    try:
        cursor = connection.cursor()
        cursor.execute(sql)
        rows = cursor.fetchall()
        return [column[0] for column in cursor.description or []], rows
    finally:
        connection.close()


def _ready(settings: Settings) -> bool:
    """Started (``/v1/info`` no longer ``starting``), every node active (the
    coordinator and ``trino_workers`` workers), and a table-scanning query
    planned on a worker: the coordinator answers simple queries several
    seconds before it can schedule table scans."""
    import requests

    session = requests.Session()
    session.trust_env = False
    info = session.get(f"https://127.0.0.1:{settings.trino_port}/v1/info", verify=str(certificate_path(settings)),
                       timeout=5).json()
    if info.get("starting", True):
        return False
    active = query("select count(*) from system.runtime.nodes where state = 'active'",
                   settings=settings, max_attempts=1)[1][0][0]
    if active < 1 + max(settings.trino_workers, len(_worker_pid_files(settings))):   # every node started
        return False
    query("select count(*) from (select * from unnest(sequence(1, 10)))", settings=settings, max_attempts=1)
    return True


def _worker_pid_files(settings: Settings) -> list[Path]:
    """The pid files of the workers running or last started (however many that was)."""
    return sorted(Path(settings.trino_home).glob("worker-*/worker.pid"))


def trino_status(settings: Settings | None = None) -> dict:
    settings = settings or get_settings()
    pid, answering = probe_service(_pid_file(settings), lambda: _ready(settings))
    workers = {path.parent.name: running_pid(path) for path in _worker_pid_files(settings)}
    return {"running": pid is not None, "answering": answering, "pid": pid,
            "workers": {name: worker for name, worker in workers.items() if worker},
            "url": f"https://127.0.0.1:{settings.trino_port}", "catalog": CATALOG,
            "certificate": str(certificate_path(settings)),
            "passwords": str(_passwords_path(settings)), "home": str(settings.trino_home)}


def trino_up(settings: Settings | None = None, wait_seconds: int = 240) -> dict:
    """Fetch, configure and start Trino (idempotent); return once it answers queries."""
    settings = settings or get_settings()
    status = trino_status(settings)
    if status["running"] and len(status["workers"]) != settings.trino_workers:
        raise TrinoSetupError(f"Trino is running with {len(status['workers'])} worker(s), not "
                              f"{settings.trino_workers}: `govlake trino down` first, then start it with the "
                              "workers wanted")
    if status["answering"]:
        return status
    if status["running"]:
        return _wait_until_answering(settings, status["pid"], wait_seconds)
    for stale in _worker_pid_files(settings):    # workers of an earlier start that are gone
        stale.unlink(missing_ok=True)

    java_home = find_java(settings)
    server = fetch_trino(settings)
    try:
        build_plugins(server, java_home, MIN_JAVA, settings.trino_version)
    except PluginBuildError as exc:
        raise TrinoSetupError(str(exc)) from None
    etc = write_config(settings)
    try:   # the second client; the server does not need it
        fetch_trino_cli(settings)
    except TrinoSetupError as exc:
        log.warning("the Trino CLI was not fetched: %s", exc)
    start_receiver(settings)   # the audit log's receiver must be up before the first query
    log_path = Path(settings.trino_home) / "server.log"
    environment = service_environment({"JAVA_HOME": str(java_home)})
    environment["PATH"] = f"{java_home / 'bin'}{os.pathsep}{environment['PATH']}"
    offset = log_path.stat().st_size if log_path.exists() else 0
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [str(server / "bin" / "launcher"), f"--etc-dir={etc}",
             f"--data-dir={Path(settings.trino_home) / 'data'}", "run"],
            env=environment, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    _pid_file(settings).write_text(str(process.pid))
    for index in range(1, settings.trino_workers + 1):
        _start_worker(settings, index, server, environment)
    try:
        return _wait_until_answering(settings, process.pid, wait_seconds, process, offset)
    except TrinoSetupError:
        if process.poll() is not None:   # exited: nothing of this start keeps running
            _pid_file(settings).unlink(missing_ok=True)
            _stop_workers(settings)
            stop_receiver(settings)
        raise


def _start_worker(settings: Settings, index: int, server: Path, environment: dict[str, str]) -> None:
    home = worker_home(settings, index)
    pid_file = home / "worker.pid"
    if running_pid(pid_file):
        return
    with (home / "server.log").open("ab") as log_file:
        process = subprocess.Popen(
            [str(server / "bin" / "launcher"), f"--etc-dir={home / 'etc'}", f"--data-dir={home / 'data'}", "run"],
            env=environment, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    pid_file.write_text(str(process.pid))


def _stop_workers(settings: Settings) -> None:
    for pid_file in _worker_pid_files(settings):
        stop_process_group(pid_file)


_RECORD = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z?\t(\w+)\t")
_NUMBERED = re.compile(r"^\d+\) (?:\[[\w/]+\]: )?")


def server_errors(text: str, limit: int = 30) -> list[str]:
    """The server's own error lines in a piece of Trino's log: the headline of
    each ERROR record, Guice's numbered errors ("1) Error: Invalid
    configuration property ...") and exception causes; no stack frames,
    injection paths, WARN/INFO records or repeats of the same message."""
    picked: list[str] = []
    seen: set[str] = set()
    level = None
    for line in text.splitlines():
        record = _RECORD.match(line)
        if record:
            level = record.group(1)
        if level != "ERROR" or not line.strip():
            continue
        stripped = line.strip()
        # the record's headline, Guice's numbered errors, exception causes and
        # "Configuration errors:" lists; not stack frames or injection paths
        if not (record or _NUMBERED.match(stripped) or stripped.startswith("Caused by: ")
                or re.match(r"^(?:[\w$.]+\.)?\w*(?:Exception|Error)(?::|$)", stripped)) \
                or "same stack trace as error" in stripped:
            continue
        key = _NUMBERED.sub("", stripped.removeprefix("Caused by: "))
        if key in seen:
            continue
        seen.add(key)
        picked.append(stripped)
    return picked[:limit]


def _new_log(log_path: Path, offset: int) -> str:
    if not log_path.exists():
        return ""
    with log_path.open("rb") as handle:
        handle.seek(offset)
        return handle.read().decode("utf-8", errors="replace")


def _wait_until_answering(settings: Settings, pid: int, wait_seconds: int, process=None, offset: int = 0) -> dict:
    deadline = time.monotonic() + wait_seconds
    log_path = Path(settings.trino_home) / "server.log"
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            text = _new_log(log_path, offset)
            lines = server_errors(text) or text.splitlines()[-20:]
            raise TrinoSetupError(f"Trino exited with {process.returncode} (log: {log_path}):\n" + "\n".join(lines))
        dead = [path.parent for path in _worker_pid_files(settings) if running_pid(path) is None]
        if dead:
            text = _new_log(dead[0] / "server.log", 0)
            lines = server_errors(text) or text.splitlines()[-20:]
            raise TrinoSetupError(f"Trino {dead[0].name} exited (log: {dead[0] / 'server.log'}):\n"
                                  + "\n".join(lines))
        status = trino_status(settings)
        if status["answering"]:
            return status
        time.sleep(2)
    lines = server_errors(_new_log(log_path, offset))
    raise TrinoSetupError(f"Trino (pid {pid}) did not answer within {wait_seconds}s (log: {log_path})"
                          + (":\n" + "\n".join(lines) if lines else ""))


def trino_down(settings: Settings | None = None) -> bool:
    """Stop the Trino started by ``trino_up`` (its process group, by its own pid)."""

    settings = settings or get_settings()
    stop_process_group(keeper_pid_file(settings), grace_seconds=5)
    stop_receiver(settings)
    _stop_workers(settings)
    return stop_process_group(_pid_file(settings))
