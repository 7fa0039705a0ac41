"""`stigmer ui` in a real browser (headless Debian chromium, via Selenium).

Covers: tokens appearing on the execution page within a second; a new
execution appearing in the list; no duplicated text after a daemon restart;
a message's tool call put in place as its text grows (no re-render);
refusal without the token, from a foreign Host (DNS rebinding) and from
another origin's page; untrusted content (HTML, script tags, `javascript:`
links, Markdown image tricks) running nothing, injecting no element and
loading nothing remote; cancel from the page ending a runner; and the
daemon page's status and chart, with the backend's rows in the cluster mode
(against a one-member etcd; skipped without `etcd`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from contextlib import ExitStack
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from stigmer_client import Client

from harness import (
    STIGMER,
    Daemon,
    Etcd,
    Ui,
    chromium,
    facts,
    requested_urls,
    shot,
    text_of,
    wait_for,
)


def open_execution(browser: WebDriver, ui: Ui, execution_id: str) -> None:
    browser.get(f"{ui.base}/executions/{execution_id}")
    wait_for("the stream to be live", lambda: text_of(browser, "conn") == "live")


def transcript(browser: WebDriver) -> str:
    """The messages' rendered text (role labels left out)."""
    value = browser.execute_script(
        "return [...document.querySelectorAll('#transcript .msg .body')]"
        ".map(b => b.innerText).join('\\n')"
    )
    return str(value)


def test_tokens_appear_on_the_page_within_a_second(
    daemon: Daemon, ui: Ui, browser: WebDriver
) -> None:
    execution_id = daemon.create("writer", "Write a haiku", session="s-haiku")
    daemon.update(execution_id, {"phase": "EXECUTION_IN_PROGRESS"})
    open_execution(browser, ui, execution_id)
    tokens = ["# Haiku\n\n", "Tokens ", "fall ", "like ", "**rain**", "\n\n", "- one\n", "- two"]
    expected = ""
    worst = 0.0
    for token in tokens:
        daemon.append(execution_id, token)
        appended = time.monotonic()
        expected += token
        want = expected.replace("#", "").replace("*", "").replace("- ", "").split()

        def shown(want: list[str] = want) -> bool:
            return transcript(browser).split() == want

        wait_for(f"{token!r} on the page", shown, timeout=5)
        worst = max(worst, time.monotonic() - appended)
    assert worst < 1.0, f"a token took {worst:.2f}s to show"
    # Markdown rendered: a heading, bold text, a list.
    assert browser.find_element(By.CSS_SELECTOR, "#transcript h3").text == "Haiku"
    assert browser.find_element(By.CSS_SELECTOR, "#transcript strong").text == "rain"
    assert len(browser.find_elements(By.CSS_SELECTOR, "#transcript li")) == 2
    # Todos ticking over and a tool call, shown beside the transcript.
    daemon.update(
        execution_id,
        {
            "toolCalls": [
                {
                    "id": "t1",
                    "name": "count_syllables",
                    "args": {"line": "Tokens fall like rain"},
                    "result": "5",
                    "status": "TOOL_CALL_COMPLETED",
                    "startedAt": "2026-01-01T00:00:00Z",
                    "completedAt": "2026-01-01T00:00:01.200Z",
                }
            ],
            "todos": {
                "a": {"content": "Draft the lines", "status": "TODO_COMPLETED"},
                "b": {"content": "Check the syllables", "status": "TODO_IN_PROGRESS"},
            },
        },
    )
    wait_for("the todos", lambda: "Check the syllables" in text_of(browser, "todos"))
    assert "count_syllables" in text_of(browser, "tools")
    assert "completed · 1.2s" in text_of(browser, "tools")
    assert transcript(browser).split()[:2] == ["Haiku", "Tokens"], "text kept"
    browser.find_element(By.CSS_SELECTOR, "details.tool summary").click()
    assert '"line": "Tokens fall like rain"' in text_of(browser, "tools")
    shot(browser, "execution")


def test_a_new_execution_appears_in_the_list(daemon: Daemon, ui: Ui, browser: WebDriver) -> None:
    first = daemon.create("planner", "Plan the release", session="s-release")
    daemon.update(first, {"phase": "EXECUTION_IN_PROGRESS"})
    daemon.append(first, "Checking the changelog")
    wait_for(
        "the first row", lambda: browser.find_elements(By.CSS_SELECTOR, f"tr[data-id='{first}']")
    )
    second = daemon.create("reviewer", "Review the diff", session="s-release")
    appeared = time.monotonic()
    row = wait_for(
        "the new row",
        lambda: browser.find_elements(By.CSS_SELECTOR, f"tr[data-id='{second}']"),
        timeout=5,
    )[0]
    assert time.monotonic() - appeared < 1.0
    assert "reviewer" in row.text and "pending" in row.text
    third = daemon.create("tester", "Run the suite", session="s-other")
    daemon.update(third, {"phase": "EXECUTION_FAILED", "error": "3 tests failed"})
    wait_for("the failed row", lambda: "3 tests failed" in text_of(browser, "rows"))
    phases = {
        el.get_attribute("data-phase") for el in browser.find_elements(By.CSS_SELECTOR, ".phase")
    }
    assert {"in-progress", "pending", "failed"} <= phases
    shot(browser, "executions")
    # Filters: by session, then by phase.
    browser.find_element(By.ID, "f-session").send_keys("s-release")
    wait_for("the session filter", lambda: third not in text_of(browser, "rows"))
    assert first in text_of(browser, "rows")
    browser.find_element(By.ID, "f-session").clear()
    browser.find_element(By.CSS_SELECTOR, "#f-phase option[value='failed']").click()
    wait_for("the phase filter", lambda: first not in text_of(browser, "rows"))
    assert third in text_of(browser, "rows")


def test_text_resumes_after_a_daemon_restart_without_duplicates(
    daemon: Daemon, ui: Ui, browser: WebDriver
) -> None:
    execution_id = daemon.create("writer", "Count")
    daemon.append(execution_id, "alpha ")
    open_execution(browser, ui, execution_id)
    wait_for("alpha", lambda: transcript(browser).strip() == "alpha")
    daemon.append(execution_id, "beta ")
    wait_for("beta", lambda: transcript(browser).strip() == "alpha beta")
    daemon.stop()
    wait_for("the page to notice", lambda: True)
    daemon.start()
    daemon.append(execution_id, "gamma ")
    daemon.append(execution_id, "delta")
    wait_for("the text after the restart", lambda: "delta" in transcript(browser), timeout=15)
    time.sleep(0.5)
    assert transcript(browser).strip() == "alpha beta gamma delta"


def message_tool_calls(browser: WebDriver) -> list[str]:
    """The summaries of the tool calls shown in the transcript's messages."""
    value = browser.execute_script(
        "return [...document.querySelectorAll('#transcript .msg details.tool summary')]"
        ".map(s => s.innerText)"
    )
    return [str(v) for v in value]


def test_a_message_tool_call_is_put_in_place(daemon: Daemon, ui: Ui, browser: WebDriver) -> None:
    # Upstream's runner resends its whole status; the AI message's text
    # grows while its own tool calls change: the daemon streams
    # append_text and put_message_tool_call, and the page puts the tool
    # call into the message it is on, without re-rendering the message.
    execution_id = daemon.create("writer", "Search the logs")
    daemon.append(execution_id, "alpha ")
    open_execution(browser, ui, execution_id)
    wait_for("alpha", lambda: transcript(browser).strip() == "alpha")
    browser.execute_script("document.querySelector('#transcript .msg').dataset.mark = 'kept'")

    def call(call_id: str, status: str) -> dict[str, Any]:
        return {"id": call_id, "name": f"search_{call_id}", "status": status}

    def update(text: str, calls: list[dict[str, Any]]) -> None:
        message = {"type": "MESSAGE_AI", "content": text, "toolCalls": calls}
        daemon.update(execution_id, {"messages": [message], "toolCalls": calls})

    # The text is rendered on the next animation frame (StreamingMarkdown),
    # a tool call at once: each is waited for on its own.
    update("alpha beta ", [call("c1", "TOOL_CALL_RUNNING")])
    wait_for("the tool call", lambda: message_tool_calls(browser) == ["search_c1 running"])
    wait_for("beta", lambda: transcript(browser).split() == ["alpha", "beta"])
    update(
        "alpha beta gamma",
        [call("c1", "TOOL_CALL_COMPLETED"), call("c2", "TOOL_CALL_RUNNING")],
    )
    wait_for(
        "c1 completed and c2",
        lambda: message_tool_calls(browser) == ["search_c1 completed", "search_c2 running"],
    )
    wait_for("gamma", lambda: transcript(browser).split() == ["alpha", "beta", "gamma"])
    mark = browser.execute_script("return document.querySelector('#transcript .msg').dataset.mark")
    assert mark == "kept", "the message was patched, not replaced"


def test_the_dashboard_refuses_without_the_token(tmp_path: Path, ui: Ui) -> None:
    driver = chromium(tmp_path / "fresh")
    try:
        driver.get(f"{ui.base}/")
        assert "not signed in" in driver.find_element(By.TAG_NAME, "body").text
        driver.get(f"{ui.base}/?token=0000")
        assert "wrong token" in driver.find_element(By.TAG_NAME, "body").text
        driver.get(f"{ui.base}/api/watch")
        assert "not signed in" in driver.find_element(By.TAG_NAME, "body").text
    finally:
        driver.quit()


def test_a_rebound_host_is_refused(tmp_path: Path, ui: Ui) -> None:
    # DNS rebinding: the attacker's name resolves to 127.0.0.1.
    port = ui.base.rsplit(":", 1)[1]
    driver = chromium(tmp_path / "rebind", rules="MAP rebound.test 127.0.0.1")
    try:
        driver.get(f"http://rebound.test:{port}/?token={ui.token}")
        body = driver.find_element(By.TAG_NAME, "body").text
        assert "unknown Host" in body
        assert driver.get_cookies() == []
    finally:
        driver.quit()


def test_another_origins_page_can_neither_read_nor_cancel(
    tmp_path: Path, daemon: Daemon, ui: Ui, browser: WebDriver
) -> None:
    execution_id = daemon.create("victim", "Keep running")
    site = tmp_path / "attacker"
    site.mkdir()
    (site / "a.js").write_text((Path(__file__).parent / "attacker.js").read_text())
    (site / "index.html").write_text(
        f'<!doctype html><body data-target="{ui.base}" data-id="{execution_id}">'
        '<script src="a.js"></script></body>'
    )
    handler = partial(SimpleHTTPRequestHandler, directory=str(site))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # The same browser, signed in to the dashboard, visits the page.
        browser.get(f"http://127.0.0.1:{server.server_address[1]}/index.html")

        def finished() -> str | None:
            title = str(browser.title)
            return title if title.startswith("done") else None

        title = wait_for("the attack to finish", finished)
        assert "read:blocked" in title, title
        assert "sse:blocked" in title, title
    finally:
        server.shutdown()
    time.sleep(0.3)
    assert daemon.phase(execution_id) == "EXECUTION_PENDING"


XSS = [
    "<script>window.pwned = 1</script>",
    '<img src="x" onerror="window.pwned = 2">',
    "[click me](javascript:window.pwned=3)",
    "[data](data:text/html,<script>window.pwned=4</script>)",
    "![tracker](http://203.0.113.9/pixel.png)",
    "[![inner](http://203.0.113.9/inner.png)](http://example.com/)",
    '<iframe src="http://203.0.113.9/frame"></iframe>',
    '**<svg onload="window.pwned=5">**',
    '<a href="javascript:window.pwned=6">html link</a>',
    "`<b>code</b>` and [ok](https://example.com/docs)",
    '<style>body{background:url("http://203.0.113.9/css")}</style>',
]


def assert_nothing_ran_or_loaded(browser: WebDriver, scope: str) -> None:
    assert browser.execute_script("return window.pwned === undefined"), "a payload ran"
    injected = browser.execute_script(
        "return [...document.querySelectorAll(arguments[0] + ' :is(script,img,iframe,svg,object,"
        "embed,style,link,b,form,input,video,audio,source)')].map(e => e.outerHTML)",
        scope,
    )
    assert injected == [], injected
    own = browser.execute_script("return location.origin + '/'")
    for a in browser.find_elements(By.CSS_SELECTOR, f"{scope} a"):
        href = a.get_attribute("href") or ""
        assert href.startswith(("http://", "https://")), href
        if not href.startswith(own):
            assert "noopener" in (a.get_attribute("rel") or ""), href
    remote = [
        u
        for u in requested_urls(browser)
        if not u.startswith(("http://127.0.0.1", "data:", "chrome", "about:"))
    ]
    assert remote == [], remote


def test_untrusted_content_runs_nothing_and_loads_nothing(
    daemon: Daemon, ui: Ui, browser: WebDriver
) -> None:
    payload = "\n\n".join(XSS)
    execution_id = daemon.create(
        '<img src=x onerror="window.pwned=7">', payload, session="<script>window.pwned=8</script>"
    )
    daemon.update(
        execution_id,
        {
            "phase": "EXECUTION_IN_PROGRESS",
            "error": '<img src=x onerror="window.pwned=9">',
            "toolCalls": [
                {
                    "id": "t1",
                    "name": "<script>window.pwned=10</script>",
                    "args": {"html": '<img src=x onerror="window.pwned=11">'},
                    "result": "<script>window.pwned=12</script>",
                    "status": "TOOL_CALL_COMPLETED",
                }
            ],
            "todos": {"k": {"content": "<b>todo</b>", "status": "TODO_IN_PROGRESS"}},
        },
    )
    for part in XSS:
        daemon.append(execution_id, part + "\n\n")
    # The list shows the agent, session and latest line as text.
    wait_for("the row", lambda: "window.pwned=7" in text_of(browser, "rows"))
    assert_nothing_ran_or_loaded(browser, "#rows")
    open_execution(browser, ui, execution_id)
    wait_for("the payloads", lambda: "<style>" in transcript(browser))
    for tool in browser.find_elements(By.CSS_SELECTOR, "details.tool summary"):
        tool.click()
    text = transcript(browser)
    assert "<script>window.pwned = 1</script>" in text
    assert '<img src="x" onerror="window.pwned = 2">' in text
    assert "[image: tracker] (http://203.0.113.9/pixel.png)" in text
    assert "click me (javascript:window.pwned=3)" in text
    assert "window.pwned=12" in text_of(browser, "tools")
    links = [
        a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "#transcript a")
    ]
    assert "https://example.com/docs" in links
    assert_nothing_ran_or_loaded(browser, "main")
    shot(browser, "xss")


def test_cancel_from_the_page_ends_the_runner(
    tmp_path: Path, daemon: Daemon, ui: Ui, browser: WebDriver
) -> None:
    execution_id = daemon.create("looper", "Run until told to stop")
    # A runner: appends a token every 50 ms until the daemon refuses it.
    script = tmp_path / "runner.sh"
    script.write_text(
        "#!/bin/sh\n"
        f"while '{STIGMER}' --socket '{daemon.socket}' executions append '{execution_id}' "
        "--text 'tick ' >/dev/null 2>&1; do sleep 0.05; done\n"
        "exit 42\n"
    )
    runner = subprocess.Popen(["sh", str(script)])
    try:
        open_execution(browser, ui, execution_id)
        wait_for("ticks", lambda: transcript(browser).count("tick") >= 3)
        assert runner.poll() is None
        browser.find_element(By.ID, "cancel").click()
        wait_for("the cancelled phase", lambda: text_of(browser, "phase") == "cancelled")
        assert runner.wait(10) == 42
        assert daemon.phase(execution_id) == "EXECUTION_CANCELLED"
        wait_for("the end of the stream", lambda: "ended" in text_of(browser, "conn"))
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()


def test_the_daemon_page_shows_the_status_and_a_chart(ui: Ui, browser: WebDriver) -> None:
    browser.get(f"{ui.base}/daemon")
    wait_for("the status", lambda: "connections" in text_of(browser, "status"))
    assert "commit p99" in text_of(browser, "status")
    shown = facts(browser, "status")
    assert shown["backend"] == "sqlite", shown
    assert "replica lag (revisions)" not in shown, "no cluster rows on a daemon alone"
    wait_for(
        "the chart",
        lambda: browser.find_elements(By.CSS_SELECTOR, "#chart svg polyline.line-commit"),
    )


def test_the_daemon_page_shows_the_cluster_mode(tmp_path: Path) -> None:
    """In the cluster mode the daemon page shows the backend, the replica's
    applied revision, etcd's revision and the lag, as `stigmer status` does."""
    binary = shutil.which("etcd")
    if binary is None:
        pytest.skip("etcd not installed (apt-get install etcd-server)")
    (tmp_path / "cluster").mkdir()
    with ExitStack() as stack:
        etcd = Etcd(binary, tmp_path / "cluster")
        stack.callback(etcd.stop)
        replica = Daemon(tmp_path / "cluster", "--etcd", etcd.url)
        stack.callback(replica.stop)
        execution_id = replica.create("writer", "Replicated through etcd")
        replica.append(execution_id, "hello")
        # Nothing is written from here on: the revisions the page must show.
        status = json.loads(replica.cli("status", "-o", "json"))
        applied = int(status["replicaAppliedRevision"])
        assert status["backend"] == "etcd" and applied > 0, status
        assert int(status["etcdRevision"]) >= applied, status
        own = Ui(replica)
        stack.callback(own.stop)
        driver = chromium(tmp_path / "profile-cluster")
        stack.callback(driver.quit)
        driver.get(own.url)
        wait_for("the executions page", lambda: driver.current_url == f"{own.base}/")
        driver.get(f"{own.base}/daemon")

        def cluster_rows() -> dict[str, str] | None:
            shown = facts(driver, "status")
            return shown if "replica lag (revisions)" in shown else None

        shown = wait_for("the cluster rows", cluster_rows)
        assert shown["backend"] == "etcd (cluster mode)", shown
        assert int(shown["replica applied revision"]) == applied, shown
        heard = int(shown["etcd revision"])
        assert heard >= applied, shown
        assert int(shown["replica lag (revisions)"]) == heard - applied, shown
        # The rows follow the revision, in the page's one list of facts.
        labels = list(shown)
        at = labels.index("revision")
        assert labels[at + 1 : at + 5] == [
            "backend",
            "replica applied revision",
            "etcd revision",
            "replica lag (revisions)",
        ], labels
        shot(driver, "daemon-cluster")


LAST_PARAGRAPH = (
    "return (() => { const p = document.querySelectorAll('#transcript p'); "
    "return p.length ? p[p.length - 1].textContent : ''; })()"
)


def test_a_10_mb_transcript_stays_responsive(tmp_path: Path) -> None:
    # Its own daemon: a 10 MB state needs frames larger than the default 4 MiB.
    (tmp_path / "big").mkdir()
    big = Daemon(tmp_path / "big", "--max-frame-length", str(32 << 20))
    own = Ui(big)
    driver = chromium(tmp_path / "profile-big")
    # The Python client, told of the larger frames (the CLI reads whole
    # states in its answers, with the default limit).
    runner = Client(str(big.socket), max_frame_length=32 << 20)
    try:
        execution_id = big.create("novelist", "Write at length")
        paragraph = ("All work and no play makes a long transcript. " * 8).strip() + "\n\n"
        chunk = paragraph * ((1 << 20) // len(paragraph))
        for _ in range(10):
            runner.append_text(execution_id, chunk)
        runner.append_text(execution_id, "The last paragraph so far.")
        driver.get(own.url)
        started = time.monotonic()
        driver.get(f"{own.base}/executions/{execution_id}")
        wait_for(
            "the whole transcript",
            lambda: driver.execute_script(LAST_PARAGRAPH) == "The last paragraph so far.",
            timeout=60,
        )
        loaded = time.monotonic() - started
        print(f"10 MB transcript rendered in {loaded:.1f}s")
        # New text still shows within a second, paragraph after paragraph.
        for n in range(5):
            runner.append_text(execution_id, f"\n\nToken {n} at the end.")
            appended = time.monotonic()

            def at_end(n: int = n) -> bool:
                return bool(driver.execute_script(LAST_PARAGRAPH) == f"Token {n} at the end.")

            wait_for(f"token {n}", at_end, timeout=10)
            took = time.monotonic() - appended
            assert took < 1.0, f"token {n} took {took:.2f}s on a 10 MB transcript"
    finally:
        runner.close()
        driver.quit()
        own.stop()
        big.stop()
