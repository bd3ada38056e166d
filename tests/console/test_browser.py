"""The console in a real browser (Debian's Chromium) against a real node: it loads cleanly,
follows the registry live, operates with a token, refuses what a token may not do, and renders
hostile data as text."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

import httpx

from tests.console.conftest import (
    DEADLINE,
    OPS_TOKEN,
    REGION,
    VIEWER_TOKEN,
    Tab,
    instance,
    looked_up,
    post,
    register,
    unregister,
)
from tests.process.conftest import RunningNode, poll

ROUTES: Final = ["#/overview", "#/services", "#/operations", "#/groups", "#/audit"]
# Records, in the page, when a row of an instance appears in and leaves the instances table,
# with the cause the console gave the render (`data-cause`: push, poll, load...).
WATCH_ROWS: Final = """(id) => {
  window.__rows = [];
  const seen = () => document.querySelector(`tr[data-instance-id="${CSS.escape(id)}"]`);
  let present = Boolean(seen());
  new MutationObserver(() => {
    const row = seen();
    if (Boolean(row) !== present) {
      present = Boolean(row);
      const table = document.querySelector("table.instances, p.empty[data-cause]");
      window.__rows.push({present, at: Date.now(),
                          cause: table ? table.dataset.cause : null});
    }
  }).observe(document.getElementById("main"), {childList: true, subtree: true});
}"""


def waited(tab: Tab, script: str, ready: Callable[[Any], bool], what: str) -> Any:
    """The value of `script` in the page once `ready` says it is (polled, with a deadline)."""

    def probe() -> Any:
        value = tab.evaluate(script)
        return value if ready(value) else None

    return poll(probe, DEADLINE, what)


def rows_seen(tab: Tab, count: int) -> list[dict[str, Any]]:
    """The first `count` appearances and disappearances recorded by WATCH_ROWS."""
    rows: list[dict[str, Any]] = waited(tab, "window.__rows", lambda r: len(r) >= count,
                                        f"{count} changes of the instances table")
    return rows[:count]


def test_the_node_redirects_to_a_console_that_loads_without_errors(tab: Tab) -> None:
    """`/` leads to /console/; every page renders (the overview shows this node up) and the
    browser reports no console error, CSP violation or uncaught exception."""
    tab.page.goto(tab.base + "/")
    tab.page.wait_for_selector("#node .badge.up")
    for route in ROUTES:
        tab.page.goto(f"{tab.base}/console/{route}")
        tab.page.wait_for_selector("main h1")
    assert (f"{tab.base}/console/#/audit", [], "Overview") == (
        tab.page.url, tab.problems(), _first_h1(tab, "#/overview"))


def _first_h1(tab: Tab, route: str) -> str:
    tab.open(route)
    return str(tab.page.inner_text("main h1"))


def test_an_instance_appears_and_disappears_as_the_node_pushes_it(
        tab: Tab, managed_node: RunningNode) -> None:
    """An instance registered through the API appears on the open service page, rendered by
    the push (not by a poll), and disappears when unregistered; the in-page timestamps give
    how long after the change it was on screen."""
    service, key = "live.appears", "10.1.0.1:8080"
    tab.open("#/service/" + service)
    tab.page.wait_for_selector("p.empty[data-cause]")
    tab.page.wait_for_selector("span.live[data-state=live]")
    tab.evaluate(WATCH_ROWS, key)

    registered = tab.evaluate("Date.now()")
    register(managed_node, instance(service, key, "10.1.0.1"))
    appeared = rows_seen(tab, 1)[0]
    unregistered = tab.evaluate("Date.now()")
    unregister(managed_node, instance(service, key, "10.1.0.1"))
    gone = rows_seen(tab, 2)[1]

    print(f"\nconsole: on screen {appeared['at'] - registered} ms after the register call, "
          f"gone {gone['at'] - unregistered} ms after the unregister call")
    assert [(True, "push"), (False, "push")] == [(appeared["present"], appeared["cause"]),
                                                 (gone["present"], gone["cause"])]
    assert [] == tab.problems()


def test_push_resumes_after_a_dropped_connection_without_losing_a_change(
        tab: Tab, managed_node: RunningNode) -> None:
    """The console's subscription, its connection dropped, subscribes again with the last
    revision it saw: the node replays the changes made meanwhile, in order, with no reload."""
    service = "live.resumes"
    tab.open("#/overview")
    tab.page.wait_for_selector("#node .badge")
    tab.evaluate("""async (service) => {
      const {Subscription} = await import("./js/live.js");
      window.__frames = [];
      const sub = new Subscription(service, "", {
        onFrame: (f) => window.__frames.push([f.changeType, f.instance.instanceId]),
        onState: () => {}});
      sub.retry = () => { window.__resume = () => sub.open(); };  // the test reconnects it
      window.__sub = sub;
      sub.open();
      await new Promise((ok) => sub.socket.addEventListener("open", ok));
    }""", service)
    register(managed_node, instance(service, "a", "10.2.0.1"))
    waited(tab, "window.__frames", lambda f: len(f) == 1, "the frame of a")

    tab.evaluate("""() => new Promise((ok) => {
      window.__sub.socket.addEventListener("close", ok);
      window.__sub.socket.close();
    })""")
    register(managed_node, instance(service, "b", "10.2.0.2"))
    unregister(managed_node, instance(service, "a", "10.2.0.1"))
    tab.evaluate("window.__resume()")
    frames = waited(tab, "window.__frames", lambda f: len(f) >= 3, "replayed frames")

    assert [["new", "a"], ["new", "b"], ["delete", "a"]] == frames
    tab.evaluate("window.__sub.close()")


def test_a_pull_out_made_in_the_console_removes_the_instance_from_lookup(
        tab: Tab, managed_node: RunningNode) -> None:
    """Signed in with a write token, an operator pulls an instance out from its row: the
    dialog shows the node's answer, lookup.json no longer lists it, the row says it is pulled
    out; pulling it back in returns it to lookup.json."""
    service = "operate.me"
    register(managed_node, instance(service, "keep", "10.3.0.1"),
             instance(service, "pull", "10.3.0.2"))
    tab.open("#/service/" + service)
    tab.sign_in(OPS_TOKEN)
    row = tab.page.locator('tr[data-instance-id="pull"]')
    row.locator("button[data-action=pull-out]").click()
    tab.page.fill("#operate input[name=reason]", "bad disk")
    tab.page.click("#operate button[type=submit]")
    answer = tab.page.locator("#operate p.answer")
    answer.locator(".ok").wait_for()
    out_text = answer.inner_text()
    poll(lambda: looked_up(managed_node, service) == ["keep"] or None, DEADLINE,
         "lookup.json without the pulled-out instance")
    tab.page.click("#operate button[type=button]")
    row.locator(".badge.down").wait_for()

    row.locator("button[data-action=pull-in]").click()
    tab.page.click("#operate button[type=submit]")
    answer.locator(".ok").wait_for()
    poll(lambda: looked_up(managed_node, service) == ["keep", "pull"] or None, DEADLINE,
         "lookup.json with the instance back in")
    audit = post(managed_node, "/api/management/log/instance-operation-logs.json",
                 {"serviceId": service}, OPS_TOKEN)["logs"]

    assert ("Done: the node answered success.", [
        ("ops", "alice", "pull-out", True, "pull"), ("ops", "alice", "pull-out", False, "pull")],
        []) == (out_text, [(e["actor"], e["operatorId"], e["operation"], e["complete"],
                            e["instanceId"]) for e in audit], tab.problems())


def test_a_wrong_token_is_refused(tab: Tab, managed_node: RunningNode) -> None:
    """A token the node does not know signs nothing in: the dialog says so, nothing is kept in
    the browser, and no action is offered."""
    service = "refuse.wrong"
    register(managed_node, instance(service, "i-1", "10.4.0.1"))
    tab.open("#/service/" + service)
    tab.page.wait_for_selector('tr[data-instance-id="i-1"]')
    tab.sign_in("not-a-token-of-this-node-0000")
    problem = tab.page.locator("#sign-in p.problem")
    problem.filter(has_text="does not know").wait_for()

    assert ("The node does not know this token: nothing was signed in.", None, 0,
            "Not signed in (read only)") == (
        problem.inner_text(), tab.evaluate("sessionStorage.getItem('artemis.console.token')"),
        tab.page.locator("button[data-action]").count(),
        tab.page.inner_text("#identity .who"))


def test_a_read_only_token_sees_everything_and_is_offered_no_change(
        tab: Tab, managed_node: RunningNode) -> None:
    """Signed in with a read token: operations in force, groups and the audit log show, but no
    button or form that changes anything; the node refuses the token's writes anyway."""
    service = "read.only"
    register(managed_node, instance(service, "i-1", "10.5.0.1"))
    pulled = post(managed_node, "/api/management/operate-instance.json", {
        "instanceKey": {"regionId": REGION, "serviceId": service, "instanceId": "i-1"},
        "operation": "pull-out", "operatorId": "bob"}, OPS_TOKEN)
    assert "success" == pulled["responseStatus"]["errorCode"]
    tab.open("#/service/" + service)
    tab.sign_in(VIEWER_TOKEN)
    tab.page.wait_for_selector("text=Signed in as")
    row = tab.page.locator('tr[data-instance-id="i-1"]')
    row.locator(".badge.down").wait_for()
    operations = row.inner_text()
    seen = {"#/service/" + service: _changers(tab)}
    for route in ("#/operations", "#/groups?service=" + service, "#/audit"):
        tab.open(route)
        tab.page.wait_for_selector("main h1")
        tab.page.wait_for_selector("main table, main p.empty")
        seen[route] = _changers(tab)
    tab.open("#/operations")
    listed = tab.page.locator("main table").first.inner_text()
    refused = post(managed_node, "/api/management/operate-instance.json", {
        "instanceKey": {"regionId": REGION, "serviceId": service, "instanceId": "i-1"},
        "operation": "pull-out", "operationComplete": True, "operatorId": "viewer"},
        VIEWER_TOKEN)

    assert ({"#/service/" + service: 0, "#/operations": 0, f"#/groups?service={service}": 0,
             "#/audit": 0}, True, True, "no-permission") == (
        seen, "instance: pull-out" in operations, service in listed and "i-1" in listed,
        refused["responseStatus"]["errorCode"])
    assert [] == tab.problems()


def _changers(tab: Tab) -> int:
    """Buttons and forms that would change something: actions, and forms other than the
    audit log's filters."""
    return int(tab.evaluate("""() => document.querySelectorAll(
      "main button[data-action], main button.danger, main button.primary, main form.inline, "
      + "main input.weight").length"""))


HOSTILE_SERVICE: Final = '<img src=x onerror="window.__pwned=1">svc'
HOSTILE_ID: Final = '<script>window.__pwned=2</script>'
HOSTILE_URL: Final = "javascript:window.__pwned=3"
HOSTILE_META: Final = {"<b>key</b>": '<img src=x onerror="window.__pwned=4">',
                       "link": "javascript:window.__pwned=5"}


def test_hostile_ids_urls_and_metadata_render_as_text(tab: Tab,
                                                      managed_node: RunningNode) -> None:
    """Ids, URLs and metadata holding markup and `javascript:` are shown as the text they are:
    no script runs, no element is made of them, no link points at them."""
    register(managed_node, {**instance(HOSTILE_SERVICE, HOSTILE_ID, "10.6.0.1"),
                            "url": HOSTILE_URL, "healthCheckUrl": HOSTILE_URL,
                            "groupId": '"><svg onload="window.__pwned=6">',
                            "metadata": HOSTILE_META})
    tab.open("#/services")
    tab.page.fill("#service-search", "<img")
    tab.page.locator("table.services[data-prefix='<img']").wait_for()
    listed = tab.page.inner_text("table.services tbody")
    tab.page.click("table.services a")
    tab.page.locator("table.instances").wait_for()
    row = tab.page.locator("table.instances tbody tr").first
    shown = row.inner_text()
    made = tab.evaluate("""() => ({
      pwned: window.__pwned === undefined ? null : window.__pwned,
      scripts: document.querySelectorAll("main script, main img, main svg, main b").length,
      javascriptLinks: [...document.querySelectorAll("a")].filter(
        (a) => a.getAttribute("href") && a.getAttribute("href").includes("javascript")).length,
      title: document.getElementById("service-id").textContent})""")

    assert ({"pwned": None, "scripts": 0, "javascriptLinks": 0, "title": HOSTILE_SERVICE},
            True) == (made, HOSTILE_SERVICE in listed)
    for text in (HOSTILE_ID, HOSTILE_URL, *HOSTILE_META, *HOSTILE_META.values()):
        assert text in shown
    assert [] == tab.problems()


def test_errors_are_told_in_plain_words(tab: Tab, managed_node: RunningNode) -> None:
    """A pull-out the node refuses (no service named) shows the node's code and message."""
    tab.open("#/operations")
    tab.sign_in(OPS_TOKEN)
    tab.page.wait_for_selector("main form.inline")
    tab.page.fill("main input[name=key]", "10.9.9.9:1")
    tab.page.click("main form.inline button[type=submit]")
    tab.page.click("#operate button[type=submit]")
    problem = tab.page.locator("#operate p.answer .problem")
    problem.wait_for()

    assert ("The node did not accept the request (bad-request): serviceId is null or empty.",
            []) == (problem.inner_text(), tab.problems())


def test_the_token_stays_in_the_browser_session(tab: Tab, managed_node: RunningNode) -> None:
    """After signing in and browsing, the token is in sessionStorage only: not in a URL the
    page asked for, not in localStorage or a cookie, not in the node's log."""
    tab.open("#/overview")
    tab.sign_in(OPS_TOKEN)
    tab.page.wait_for_selector("text=Signed in as")
    for route in ROUTES:
        tab.open(route)
        tab.page.wait_for_selector("main h1")
    kept = tab.evaluate("""() => ({session: sessionStorage.getItem("artemis.console.token"),
      local: localStorage.length, cookie: document.cookie})""")

    assert ({"session": OPS_TOKEN, "local": 0, "cookie": ""}, [], False) == (
        kept, [url for url in tab.requests if OPS_TOKEN in url],
        OPS_TOKEN in managed_node.output())


def test_signing_out_forgets_the_token(tab: Tab) -> None:
    """Sign out removes the token from the browser and the actions from the page."""
    tab.open("#/operations")
    tab.sign_in(OPS_TOKEN)
    tab.page.wait_for_selector("main form.inline")
    tab.page.click("#identity button")
    tab.page.wait_for_selector("text=Not signed in")

    assert (None, 0) == (tab.evaluate("sessionStorage.getItem('artemis.console.token')"),
                         tab.page.locator("main form.inline").count())


def test_the_overview_shows_the_management_database_and_counts(
        tab: Tab, managed_node: RunningNode) -> None:
    """The overview's figures are the node's: instances and services as overview.json counts
    them, the database answering."""
    tab.open("#/overview")
    tab.page.wait_for_selector("main .card")
    numbers = httpx.get(managed_node.url + "/api/console/overview.json", timeout=5).json()
    text = tab.page.inner_text("main")

    assert (True, True) == ("answering" in text, bool(re.search(r"Services\s+\d", text)))
    assert numbers["node"]["url"] in text


def test_groups_route_rules_and_canary_are_edited_in_the_console(
        tab: Tab, managed_node: RunningNode) -> None:
    """With a write token: a group and a route rule are added, the group joins the rule with a
    staged weight (not what discovery shows) and a release makes it the weight lookup.json
    shows; the canary instances set there get the canary rule with its staged weight."""
    service = "routes.demo"
    register(managed_node, instance(service, "i-1", "10.7.0.1", groupId="blue"),
             instance(service, "i-2", "10.7.0.2"))
    tab.open("#/groups?service=" + service)
    tab.sign_in(OPS_TOKEN)
    page = tab.page
    ok = page.locator("main > p.answer .ok")

    def done() -> None:
        """Wait for the node's success, then clear it for the next action."""
        poll(lambda: (ok.count() == 1 and ok.inner_text().startswith("Done")) or None,
             DEADLINE, "the node's answer")
        page.evaluate("document.querySelector('main > p.answer').replaceChildren()")

    page.fill("input[name=group-name]", "blue")
    page.fill("input[name=group-zone]", "zone-1")
    page.click("form.inline:has(input[name=group-name]) button")
    done()
    page.fill("input[name=rule-name]", "split")
    page.click("form.inline:has(input[name=rule-name]) button")
    done()
    page.locator("section.rule select[name=add-group]").wait_for()
    page.fill("section.rule input[name=add-weight]", "40")
    page.click("section.rule span.inline button")
    done()
    staged_row = page.locator("section.rule tbody tr").first
    staged_row.locator(".badge.starting").wait_for()
    staged = staged_row.inner_text()
    staged_weight = staged_row.locator("input.weight").input_value()
    before = _rules(managed_node, service)
    page.click("section.rule button.primary")
    done()
    page.locator("section.rule tbody tr .badge.starting").wait_for(state="detached")
    released = page.locator("section.rule tbody tr").first.inner_text()
    after = _rules(managed_node, service)
    page.fill("input[name=canary-app]", "app1")
    page.fill("input[name=canary-ids]", "i-2")
    page.click("form.inline:has(input[name=canary-app]) button")
    done()
    page.locator("section.rule h3 >> text=canary-route-rule").wait_for()
    split = page.locator("section.rule", has=page.locator("h3 >> text=split"))
    split.locator("button", has_text="Delete").click()
    page.fill("#operate input[name=reason]", "split no longer needed")
    page.click("#operate button[type=submit]")
    page.locator("#operate p.answer .ok").wait_for()
    page.click("#operate button[type=button]")
    split.wait_for(state="detached")
    rules_left = page.locator("section.rule h3 .mono").all_inner_texts()

    # before the release discovery shows the original's default weight, 5, not the staged 40
    assert (True, [("split", [5])], [("split", [40])]) == (
        "not released" in staged, before, after)
    assert "40" == staged_weight
    assert re.match(r"blue \(zone-1\)\s+40\s+", released), released
    assert ["canary-route-rule"] == rules_left
    assert [] == tab.problems()


def _rules(node: RunningNode, service: str) -> list[tuple[str, list[int]]]:
    """The route rules lookup.json shows for `service`: (rule, released weights)."""
    answer = post(node, "/api/discovery/lookup.json",
                  {"discoveryConfigs": [{"serviceId": service}], "regionId": REGION})
    return [(r["routeId"], [g["weight"] for g in r["groups"]])
            for s in answer["services"] for r in (s["routeRules"] or [])]
