"""The portal's web application.

FastAPI with Jinja2 templates, rendered on the server: both come with the
pinned Airflow 3 (its API server is FastAPI), so the portal adds no web
framework to the stack, and pages need no JavaScript. One local stylesheet;
nothing is loaded from the internet (government networks are offline), and
the Content-Security-Policy forbids it.

Who may do what is Trino's to say: every data page reads as the logged-in
user (``reads``). The portal itself decides only which page and action fits
a user's role (a bureau answers its own issues, a governor closes and
reopens them), refuses the rest with 403 naming why, and records each
refusal in ``<portal home>/refusals.jsonl``."""

from __future__ import annotations

import json
import logging
import re
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from pipelines.governance.issues import BUREAU_ACTIONS, GOVERNOR_ACTIONS, IssueActionRefused, respond
from pipelines.governance.reports import bureau_days, monthly_ranking, timeliness_grid
from pipelines.portal import reads
from pipelines.portal.sessions import COOKIE, Session, SessionStore, check_csrf, remember_login
from pipelines.serving.catalog import CLASSIFICATION, SHARE_TYPE_LABEL, Catalog, Department, load_catalog
from pipelines.serving.trino import ADMIN_USER
from pipelines.settings import Settings, get_settings, utc_now

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; "
                               "form-action 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
ACTION_LABELS = {"acknowledged": "确认 Acknowledge", "disputed": "异议 Dispute",
                 "fixed": "已整改 Fixed, pending redelivery", "closed": "关闭 Close", "reopened": "重新打开 Reopen",
                 "opened": "发现 Opened"}


def portal_home(settings: Settings) -> Path:
    """The portal's pid, log and refusals, next to the Trino server whose
    certificate it serves with (git-ignored)."""
    return Path(settings.trino_home) / "portal"


class Refused(Exception):
    """A page or action this user may not have; ``reason`` says why."""

    def __init__(self, reason: str, status: int = 403):
        super().__init__(reason)
        self.reason, self.status = reason, status


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(title="govlake portal", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.filters["when"] = _when
    sessions = SessionStore()
    app.state.sessions = sessions

    def catalog() -> Catalog:
        return load_catalog(settings)

    def department_of(user: str) -> Department | None:
        return next((d for d in catalog().departments.values() if user in d.users), None)

    def audit_refusal(request: Request, session: Session | None, reason: str, status: int) -> None:
        folder = portal_home(settings)
        folder.mkdir(parents=True, exist_ok=True)
        record = {"at": utc_now().isoformat(), "user": session.user if session else None,
                  "department": session.department if session else None, "method": request.method,
                  "path": request.url.path, "status": status, "reason": reason}
        with (folder / "refusals.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        log.warning("portal refused %r %r for %r: %r", request.method, request.url.path, record["user"], reason)

    def page(request: Request, name: str, session: Session | None, status: int = 200, **context) -> HTMLResponse:
        department = catalog().departments.get(session.department) if session and session.department else None
        response = templates.TemplateResponse(request, name, dict(
            context, session=session, department=department, action_labels=ACTION_LABELS,
            share_labels=SHARE_TYPE_LABEL, classification_labels=CLASSIFICATION), status_code=status)
        return response

    def signed_in(request: Request) -> Session:
        """The request's logged-in session; its department is looked up again
        on every request, so a user moved to another department (or removed
        from the catalog) does not keep the old role."""
        session = sessions.get(request.cookies.get(COOKIE))
        if session is None or session.user is None:
            raise Refused("log in first", 401)
        department = department_of(session.user)
        if department is None or department.code != session.department:
            sessions.end(session.session_id)
            raise Refused(f"{session.user}'s department changed since login: log in again", 401)
        return session

    def posted(request: Request, csrf: str) -> Session:
        """The logged-in session of a form post whose CSRF token is the session's."""
        session = signed_in(request)
        if not check_csrf(session, csrf):
            raise Refused("the form's CSRF token is missing or not this session's")
        return session

    def reader(session: Session) -> reads.TrinoReader:
        return reads.TrinoReader(session.user, session.password, settings)

    def set_cookie(response: Response, session: Session) -> None:
        response.set_cookie(COOKIE, session.session_id, secure=True, httponly=True, samesite="strict", path="/")

    @app.middleware("http")
    async def headers(request: Request, call_next):
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused):
        session = sessions.get(request.cookies.get(COOKIE))
        if exc.status == 401 and request.method == "GET":
            return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
        audit_refusal(request, session, exc.reason, exc.status)
        return page(request, "refused.html", session, status=exc.status, reason=exc.reason)

    @app.exception_handler(reads.NotVisible)
    async def not_visible(request: Request, exc: reads.NotVisible):
        session = sessions.get(request.cookies.get(COOKIE))
        reason = "Trino refused it under the sharing list: " + _first_line(str(exc))
        audit_refusal(request, session, reason, 403)
        return page(request, "refused.html", session, status=403, reason=reason)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        """Trino refusing the session's password (changed since login) ends the session; anything
        else is a fixed message (no engine error text reaches a page), logged here in full."""
        from trino.exceptions import HttpError

        session = sessions.get(request.cookies.get(COOKIE))
        if isinstance(exc, HttpError) and "401" in str(exc) and session is not None:
            sessions.end(session.session_id)
            response = RedirectResponse("/login", status_code=303)
        else:
            log.exception("portal error on %r", request.url.path)
            response = page(request, "refused.html", session, status=500,
                            reason="the portal could not answer this request; the error is in its log")
        for name, value in SECURITY_HEADERS.items():       # this handler runs outside the middleware
            response.headers.setdefault(name, value)
        return response

    # ------------------------------------------------------------------ login
    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, next: str = "/home"):
        sessions.end(request.cookies.get(COOKIE))      # a login form ends the session it replaces
        session = sessions.new()
        response = page(request, "login.html", None, csrf=session.csrf, next=_local(next), error=None)
        set_cookie(response, session)
        return response

    @app.post("/login")
    def login(request: Request, username: str = Form(""), password: str = Form(""), csrf: str = Form(""),
              next: str = Form("/home")):
        anonymous = sessions.get(request.cookies.get(COOKIE))
        if not check_csrf(anonymous, csrf):
            raise Refused("the form's CSRF token is missing or not this session's: reload the login page")
        sessions.end(anonymous.session_id)
        username = username.strip()[:64]
        client = request.client.host if request.client else "?"
        department = department_of(username)
        error = None
        if not username or not password:
            error = "用户名和密码必填 user name and password are required"
        elif sessions.locked_out(f"user:{username}", f"client:{client}"):
            error = "登录失败次数过多，请稍后再试 too many failed logins: wait five minutes"
        elif username == ADMIN_USER or department is None:
            # checked with Trino all the same, so the attempt is in its request log
            reads.check_login(username, password, settings)
            error = f"{username} is no department user of the catalog; the portal is for department users"
        elif not reads.check_login(username, password, settings):
            error = "用户名或密码错误 wrong user name or password"
        if error:
            sessions.failed(f"user:{username}", f"client:{client}")
            fresh = sessions.new()
            audit_refusal(request, None, f"login of {username!r} refused: {error}", 401)
            response = page(request, "login.html", None, status=401, csrf=fresh.csrf, next=_local(next),
                            error=error, username=username)
            set_cookie(response, fresh)
            return response
        session = sessions.new(username, password, department.code)     # a new id after login
        session.previous_login = remember_login(portal_home(settings), username, utc_now())
        response = RedirectResponse(_local(next), status_code=303)
        set_cookie(response, session)
        return response

    @app.post("/logout")
    def logout(request: Request, csrf: str = Form("")):
        session = posted(request, csrf)
        sessions.end(session.session_id)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    # ------------------------------------------------------------------ pages
    @app.get("/")
    def root():
        return RedirectResponse("/home", status_code=303)

    @app.get("/home", response_class=HTMLResponse)
    def home(request: Request):
        session = signed_in(request)
        department = catalog().departments[session.department]
        user = reader(session)
        governor = department.role == "governor"
        if not (department.bureau or governor):
            return page(request, "home.html", session, issues=None, quarantine=None, collection=None,
                        governor=False)
        trend = []
        try:
            issues = reads.open_issues(user)
            quarantine, collected = reads.quarantine_summary(user), reads.collection(user)
            days = bureau_days(reads.scorecard_trend(user))
            if not governor and department.bureau in days:
                trend = list(days[department.bureau].items())
        except reads.NotVisible:
            issues = quarantine = collected = None
        except reads.MissingTable:
            issues, quarantine, collected = [], [], []
        since = session.previous_login
        new = reads.new_since(issues or [], since)
        return page(request, "home.html", session, issues=issues, quarantine=quarantine, collection=collected,
                    governor=governor, trend=trend_line(trend), shown_limit=reads.OPEN_ISSUES_SHOWN, new=new,
                    since=since)

    @app.get("/issues/{issue_id}", response_class=HTMLResponse)
    def issue_route(request: Request, issue_id: str):
        return issue_page(request, issue_id)

    def issue_page(request: Request, issue_id: str, error: str | None = None):
        """The issue page, with a form's ``error`` (not a query parameter: no page shows text from a URL)."""
        session = signed_in(request)
        user = reader(session)
        found = reads.issue(user, issue_id)
        if found is None:
            raise Refused(f"no issue {issue_id} that {session.user} may see: unknown, or another bureau's", 404)
        department = catalog().departments[session.department]
        actions = []
        if found["status"] == "open" and department.bureau == found["bureau"]:
            actions = list(BUREAU_ACTIONS)
        if department.role == "governor":
            actions += ["closed"] if found["status"] == "open" else ["reopened"]
        return page(request, "issue.html", session, issue=found, history=reads.issue_history(user, issue_id),
                    rows=reads.offending_rows(user, found["feed"], found["sample_rows"]), actions=actions,
                    descriptions={**BUREAU_ACTIONS, **GOVERNOR_ACTIONS}, error=error)

    @app.post("/issues/{issue_id}/actions")
    def issue_action(request: Request, issue_id: str, action: str = Form(""), reason: str = Form(""),
                     csrf: str = Form("")):
        session = posted(request, csrf)
        # the user must see the issue through Trino: another bureau's is unknown to them
        found = reads.issue(reader(session), issue_id)
        if found is None:
            raise Refused(f"no issue {issue_id} that {session.user} may see: unknown, or another bureau's", 404)
        department = catalog().departments[session.department]
        if action in BUREAU_ACTIONS and department.bureau != found["bureau"]:
            raise Refused(f"issue {issue_id} is {found['bureau']}'s: only its own bureau answers it")
        if action in GOVERNOR_ACTIONS and department.role != "governor":
            raise Refused(f"only a governor may mark an issue {action}")
        if action not in BUREAU_ACTIONS and action not in GOVERNOR_ACTIONS:
            return issue_page(request, issue_id, error=f"action: unknown action {action!r}")
        if len(reason) > 2000:
            return issue_page(request, issue_id, error="reason: at most 2000 characters")
        try:
            respond(issue_id, action, session.user, department, reason, settings)
        except (IssueActionRefused, ValueError, LookupError) as exc:   # refused, or changed meanwhile
            response = issue_page(request, issue_id, error=f"reason: {exc}" if "reason" in str(exc) else str(exc))
            response.status_code = 400 if isinstance(exc, IssueActionRefused) else 409
            return response
        return RedirectResponse(f"/issues/{issue_id}", status_code=303)

    @app.get("/ranking", response_class=HTMLResponse)
    def ranking_page(request: Request, month: str = ""):
        session = signed_in(request)
        department = catalog().departments[session.department]
        if department.role != "governor":
            raise Refused("the monthly ranking of bureaus (数据质量通报) is the governors'; a bureau's own trend is "
                          "on its home page")
        user = reader(session)
        months = reads.scorecard_months(user)
        error = None
        if month and not re.fullmatch(r"(19|20)[0-9]{2}-(0[1-9]|1[0-2])", month):
            error, month = f"month: {month[:20]!r} is not a month (YYYY-MM)", ""
        month = month or (months[0] if months else settings.on_date().strftime("%Y-%m"))
        first = date.fromisoformat(month + "-01")
        after = (first + timedelta(days=32)).replace(day=1)
        history = reads.scorecard_history(user, first, after)
        ranked = monthly_ranking(history, month)
        last_day = max((r["day"] for r in history), default=None)
        latest = [r for r in history if r["day"] == last_day]
        grid_days, grid = timeliness_grid(history)
        return page(request, "ranking.html", session, month=month, months=months, ranking=ranked, latest=latest,
                    last_day=last_day, error=error, grid_days=grid_days, grid=grid)

    # ------------------------------------------------------------------ requests (需求清单)
    @app.post("/catalog/{resource_id}/requests")
    def file_a_request(request: Request, resource_id: str, columns: list[str] = Form(default=[]),
                       purpose: str = Form(""), legal_basis: str = Form(""), expires: str = Form(""),
                       row_scope: str = Form(""), csrf: str = Form("")):
        from pipelines.serving.requests import file_request

        session = posted(request, csrf)
        resource = catalog().resources.get(resource_id)
        if resource is None:
            raise Refused(f"no resource {resource_id} in the catalog", 404)
        errors = request_errors(resource, columns, purpose, legal_basis, expires, row_scope, settings.on_date())
        if errors:
            response = resource_page(request, resource_id, form_errors=errors)
            response.status_code = 400
            return response
        file_request(session.department, resource_id, columns, purpose.strip(), legal_basis.strip(),
                     date.fromisoformat(expires), session.user, row_scope or None, settings)
        return RedirectResponse("/requests", status_code=303)

    @app.get("/requests", response_class=HTMLResponse)
    def requests_route(request: Request):
        return requests_page(request)

    def requests_page(request: Request, error: str | None = None):
        from pipelines.serving.requests import demand_rows, owning_bureaus

        session = signed_in(request)
        known = catalog()
        department = known.departments[session.department]
        mine = reads.my_requests(reader(session))
        # the requests awaiting this bureau's consent: read from the demand list itself, since Trino gives a
        # department only its own requests, and an owner must see what it is asked to share (no values)
        awaiting = []
        if department.bureau:
            for row in demand_rows(settings, status="pending"):
                owners = owning_bureaus(known, row["resource"], row["columns"]) if row["resource"] in \
                    known.resources else []
                given = {c.split()[0].removeprefix("bureau=") for c in row["consents"]}
                if department.bureau in owners and department.bureau not in given:
                    awaiting.append(row)
        governor = department.role == "governor"
        return page(request, "requests.html", session, mine=mine, awaiting=awaiting, governor=governor,
                    error=error)

    @app.post("/requests/{request_id}/consent")
    def consent(request: Request, request_id: str, csrf: str = Form("")):
        from pipelines.serving.requests import consent_request

        session = posted(request, csrf)
        try:
            consent_request(request_id, session.user, settings)
        except LookupError as exc:
            raise Refused(str(exc), 404) from None
        except ValueError as exc:
            raise Refused(str(exc)) from None
        return RedirectResponse("/requests", status_code=303)

    @app.post("/requests/{request_id}/decision")
    def decision(request: Request, request_id: str, decision: str = Form(""), reason: str = Form(""),
                 csrf: str = Form("")):
        from pipelines.serving.requests import decide_request

        session = posted(request, csrf)
        if catalog().departments[session.department].role != "governor":
            raise Refused("only a governor approves or rejects a sharing request")
        if decision not in ("approve", "reject"):
            return requests_page(request, error=f"decision: {decision!r} is neither approve nor reject")
        if not reason.strip():
            return requests_page(request, error="reason: a decision needs a reason")
        try:
            decide_request(request_id, decision == "approve", session.user, reason.strip(), settings)
        except LookupError as exc:
            raise Refused(str(exc), 404) from None
        except ValueError as exc:
            return requests_page(request, error=str(exc))
        return RedirectResponse("/requests", status_code=303)

    @app.get("/catalog", response_class=HTMLResponse)
    def catalog_page(request: Request, q: str = "", classification: str = "", share_type: str = "",
                     owner: str = ""):
        session = signed_in(request)
        found = reads.search_catalog(catalog(), q, classification, share_type, owner)
        owners = sorted({r.owner_bureau for r in catalog().resources.values()})
        return page(request, "catalog.html", session, resources=found, q=q, classification=classification,
                    share_type=share_type, owner=owner, owners=owners)

    @app.get("/catalog/{resource_id}", response_class=HTMLResponse)
    def resource_route(request: Request, resource_id: str):
        return resource_page(request, resource_id)

    def resource_page(request: Request, resource_id: str, form_errors: list[str] | None = None):
        from pipelines.serving.access import decide

        session = signed_in(request)
        known = catalog()
        resource = known.resources.get(resource_id)
        if resource is None:
            raise Refused(f"no resource {resource_id} in the catalog", 404)
        decision = decide(session.user, resource, known.departments, known.grants, settings.on_date())
        try:
            grants = reads.grants_of(reader(session), resource_id)
        except reads.NotVisible:
            grants = None
        readable = [c.name for c in resource.columns if decision.columns.get(c.name)
                    and decision.columns[c.name].state != "denied"]
        preview_error = None
        try:
            rows = reads.preview(reader(session), resource, readable)
        except (reads.NotVisible, reads.MissingTable) as exc:
            rows, preview_error = [], str(exc)
        try:
            health = reads.resource_health(reader(session), resource_id)
        except reads.NotVisible:
            health = None
        department = known.departments[session.department]
        requestable = [c.name for c in resource.columns if decision.columns.get(c.name) is None
                       or decision.columns[c.name].state != "full"]
        return page(request, "resource.html", session, resource=resource, decision=decision, grants=grants,
                    lineage=reads.lineage(resource_id, settings), health=health, preview_columns=readable, preview=rows,
                    preview_error=preview_error, requestable=requestable if department.role != "governor" else [],
                    form_errors=form_errors or [])

    return app


def request_errors(resource, columns: list[str], purpose: str, legal_basis: str, expires: str, row_scope: str,
                   today: date) -> list[str]:
    """What is wrong with a sharing request form, each naming its field. Pure."""
    errors = []
    unknown = [c for c in columns if resource.column(c) is None]
    if not columns:
        errors.append("columns: choose at least one column")
    elif unknown:
        errors.append(f"columns: {resource.resource_id} has no column {', '.join(unknown)}")
    if not purpose.strip():
        errors.append("purpose: say what the data is for (用途)")
    if not legal_basis.strip():
        errors.append("legal_basis: name the law or regulation (法律依据)")
    try:
        until = date.fromisoformat(expires)
        if until <= today:
            errors.append(f"expires: {expires} is not after today ({today})")
        elif until > today.replace(year=today.year + 3):
            errors.append("expires: at most three years ahead")
    except ValueError:
        errors.append(f"expires: {expires!r} is not a date (YYYY-MM-DD)")
    if row_scope not in ("", "all", "own_town"):
        errors.append(f"row_scope: {row_scope!r} is neither all nor own_town")
    for name, value in (("purpose", purpose), ("legal_basis", legal_basis)):
        if len(value) > 500:
            errors.append(f"{name}: at most 500 characters")
    return errors


def trend_line(points: list[tuple], width: int = 600, height: int = 120) -> dict | None:
    """An SVG polyline of (day, score 0-100) points, oldest first: its
    ``points`` attribute and the figures, or None with fewer than one point. Pure."""
    if not points:
        return None
    step = width / max(1, len(points) - 1)
    drawn = " ".join(f"{round(i * step, 1)},{round(height - height * float(score) / 100, 1)}"
                     for i, (_, score) in enumerate(points))
    return {"points": drawn, "width": width, "height": height, "rows": points}


def _first_line(text: str, limit: int = 300) -> str:
    return text.strip().splitlines()[0][:limit] if text.strip() else ""


def _when(value, seconds: bool = False) -> str:
    """A timestamp as the pages show it (UTC, to the minute or second); "" for none."""
    if value is None:
        return ""
    return value.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M") if hasattr(value, "strftime") \
        else str(value)


def _local(target: str | None) -> str:
    """A redirect target on this site only (no open redirect)."""
    target = target or "/home"
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/home"
