"""Drives the web console in Debian's Chromium through Playwright.

Run by crates/berth/tests/e2e_console.rs against a `berth serve --auth` with
an image pushed to alice/app (tags v1 and v2). Prints one JSON object on
stdout with what the Rust test checks with real clients afterwards: the
pull command read from the page, the token created on the page, and (seen
through `berth`) the retention policy, immutable rule and quota set in the
forms.

Every page visited is checked with axe-core (serious and critical
violations fail) and photographed at phone and desktop width.
"""

import json
import os
import sys

from playwright.sync_api import sync_playwright

BASE = os.environ["BERTH_URL"].rstrip("/")
ALICE = (os.environ["ALICE_USER"], os.environ["ALICE_PASSWORD"])
BOB = (os.environ["BOB_USER"], os.environ["BOB_PASSWORD"])
ADMIN = (os.environ["ADMIN_USER"], os.environ["ADMIN_PASSWORD"])
SHOTS = os.environ["SCREENSHOT_DIR"]
AXE = os.environ["AXE_PATH"]

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}

failures = []


def check(condition, message):
    if not condition:
        failures.append(message)
        print("FAILED: " + message, file=sys.stderr)


def audit(page, name):
    """axe-core on the page as it is, then screenshots at both widths."""
    page.add_script_tag(path=AXE)
    found = page.evaluate(
        """async () => {
            const result = await axe.run(document);
            return result.violations
                .filter(v => v.impact === 'serious' || v.impact === 'critical')
                .map(v => v.id + ' (' + v.impact + '): ' + v.help + ' at '
                     + v.nodes.map(n => n.target.join(' ')).join(', '));
        }"""
    )
    for violation in found:
        check(False, "axe on " + name + ": " + violation)
    for label, size in (("phone", PHONE), ("desktop", DESKTOP)):
        page.set_viewport_size(size)
        page.screenshot(path=os.path.join(SHOTS, name + "-" + label + ".png"), full_page=True)
    page.set_viewport_size(DESKTOP)


def sign_in(page, user):
    page.goto(BASE + "/sign-in")
    page.fill("#username", user[0])
    page.fill("#password", user[1])
    page.click("button[type=submit]")
    page.wait_for_load_state()
    check("Signed in as" in page.content(), "signed in as " + user[0])


def sign_out(page):
    page.click("text=Sign out")
    page.wait_for_load_state()
    check(page.locator("a.button", has_text="Sign in").count() == 1, "signed out")


def main():
    result = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        # The CSP would keep the injected axe-core out; only the audit needs
        # the bypass, the pages' own script is served from /static/.
        context = browser.new_context(bypass_csp=True, viewport=DESKTOP)
        page = context.new_page()

        # Anonymous: the overview and the sign-in page. The first load is
        # everything the browser fetched for it (headers and bodies as
        # transferred), which issue 14 bounds at 200 KB.
        first_load = []

        def loaded(response):
            first_load.append(response)

        page.on("response", loaded)
        page.goto(BASE + "/")
        page.wait_for_load_state("load")
        page.remove_listener("response", loaded)
        transferred = 0
        for response in first_load:
            sizes = response.request.sizes()
            transferred += sizes["responseBodySize"] + sizes["responseHeadersSize"]
        result["first_load_bytes"] = transferred
        result["first_load_requests"] = len(first_load)
        check(0 < transferred <= 200 * 1024, "first load of %d bytes (at most 200 KB)" % transferred)
        check(page.title() == "Overview · Berth", "overview title: " + page.title())
        check("alice" not in page.inner_text("main"), "anonymous visitors do not see alice's namespace")
        audit(page, "overview-anonymous")
        page.click("a.button:has-text('Sign in')")
        page.wait_for_load_state()
        audit(page, "sign-in")

        # Alice signs in and browses to her image.
        page.fill("#username", ALICE[0])
        page.fill("#password", ALICE[1])
        page.click("main button[type=submit]")
        page.wait_for_load_state()
        check("Signed in as" in page.content(), "alice signed in")
        audit(page, "overview")
        main = page.inner_text("main")
        check("images with issues" in main, "the overview counts images with issues")
        check(page.locator("main svg[aria-label^='Pulls per day']").count() == 1, "the 30-day pulls chart")
        page.click("nav >> text=Namespaces")
        page.wait_for_load_state()
        audit(page, "namespaces")
        page.click("main a[href='/namespaces/alice']")
        page.wait_for_load_state()
        audit(page, "namespace")
        check(page.locator("main svg[aria-label^='Storage per day']").count() == 1, "the 30-day storage chart")
        page.click("main a[href='/repositories/alice/app']")
        page.wait_for_load_state()
        audit(page, "repository")
        # Its tags, searched and sorted.
        page.fill("#q", "v")
        page.select_option("#sort", "newest")
        page.click("button:has-text('Show tags')")
        page.wait_for_load_state()
        found = [t.strip() for t in page.locator("main tbody tr td:first-child").all_inner_texts()]
        check(sorted(found) == ["v1", "v2"], "tags found: %r" % found)
        audit(page, "tags")
        page.goto(BASE + "/repositories/alice/app")
        page.click("main a[href='/repositories/alice/app/-/images/v2']")
        page.wait_for_load_state()
        audit(page, "image")
        # The script shows the copy buttons; the command is on the page.
        check(page.locator("button[data-copy='docker-tag-0']").is_visible(), "copy button shown")
        # The image carries both tags; the page lists a command per tag.
        commands = [c.strip() for c in page.locator("pre[id^='podman-tag-']").all_inner_texts()]
        by_tag = [c for c in commands if c.endswith("/alice/app:v2")]
        check(len(by_tag) == 1, "a podman pull command for v2: %r" % commands)
        result["pull_command"] = by_tag[0] if by_tag else ""
        result["digest_command"] = page.inner_text("#docker-digest").strip()

        # Delete tag v1 through its confirmation.
        page.goto(BASE + "/repositories/alice/app/-/images/v1")
        page.click("summary:has-text('Delete tag v1')")
        page.click("button:has-text('Delete v1')")
        page.wait_for_load_state()
        check("The tag v1 was deleted" in page.inner_text("main"), "deletion confirmed")
        check(page.locator("main a[href='/repositories/alice/app/-/images/v1']").count() == 0, "v1 no longer listed")

        # The namespace's lifecycle: a retention policy (previewed), and an
        # immutable-tag rule.
        page.goto(BASE + "/namespaces/alice")
        page.click("main a:has-text('Quotas, retention and immutable tags')")
        page.wait_for_load_state()
        page.fill("#keep", "5")
        page.select_option("#untagged", "keep")
        page.fill("#min_age", "1d")
        page.click("button:has-text('Set policy')")
        page.wait_for_load_state()
        check("The retention policy is set." in page.inner_text("main"), "retention policy set")
        page.click("button:has-text('Preview')")
        page.wait_for_load_state()
        check("Would go to the trash: 0 images" in page.inner_text("main"), "the preview lists nothing to delete")
        page.fill("#rule-tags", "release-*")
        page.click("button:has-text('Add rule')")
        page.wait_for_load_state()
        check("Remove release-* in alice" in page.inner_text("main"), "immutable rule listed")
        audit(page, "lifecycle")

        # Delete the image (v2) into the trash, and restore it from there.
        page.goto(BASE + "/repositories/alice/app/-/images/v2")
        page.click("summary:has-text('Delete this image')")
        page.click("button:has-text('Delete image')")
        page.wait_for_load_state()
        check("was deleted" in page.inner_text("main"), "image deletion confirmed")
        page.click("main a:has-text('trash')")
        page.wait_for_load_state()
        audit(page, "trash")
        page.click("button:has-text('Restore')")
        page.wait_for_load_state()
        text = page.inner_text("main")
        check("is back" in text and "Tags restored: v2" in text, "restored with its tag: " + text[:400])

        # The namespace's vulnerabilities page (pull policy, exemptions).
        page.goto(BASE + "/namespaces/alice/exemptions")
        audit(page, "vulnerabilities")

        # A form without the session's token is refused, whatever its origin.
        refused = context.request.post(
            BASE + "/repositories/alice/app/-/tags/v2/delete",
            form={"csrf": "0" * 64},
            headers={"Origin": BASE},
            max_redirects=0,
        )
        check(refused.status == 403, "CSRF refusal: %d" % refused.status)
        check("text/html" in refused.headers.get("content-type", ""), "the refusal is a page")

        # A robot token for pulls.
        page.click("nav >> text=Tokens")
        page.wait_for_load_state()
        audit(page, "tokens")
        page.fill("#name", "ci-pull")
        page.fill("#scopes", "alice:pull")
        page.select_option("#expires", "30d")
        page.click("button:has-text('Create token')")
        page.wait_for_load_state()
        audit(page, "token-created")
        result["token_secret"] = page.inner_text("#token-secret").strip()
        result["token_name"] = "ci-pull"
        check("kubernetes.io/dockerconfigjson" in page.inner_text("#token-k8s"), "pull secret shown")

        # Signing out everywhere ends the session: the tokens page asks to
        # sign in.
        page.click("header a:has-text('" + ALICE[0] + "')")
        page.wait_for_load_state()
        audit(page, "account")
        page.click("button:has-text('Sign out everywhere')")
        page.wait_for_load_state()
        check(page.url.startswith(BASE + "/sign-in"), "after signing out everywhere: " + page.url)
        page.goto(BASE + "/tokens")
        check(page.url.startswith(BASE + "/sign-in"), "after sign-out: " + page.url)

        # The administrator sets alice's quota, and sees the settings.
        sign_in(page, ADMIN)
        page.goto(BASE + "/namespaces/alice/lifecycle")
        page.fill("#storage", "10GB")
        page.fill("#traffic", "unlimited")
        page.click("button:has-text('Set limits')")
        page.wait_for_load_state()
        check("of 10.0 GB" in page.inner_text("main"), "the storage limit is shown")
        page.click("nav >> text=Settings")
        page.wait_for_load_state()
        check("Effective configuration" in page.inner_text("main"), "settings page")
        audit(page, "settings")
        # A replication rule, created through the form (never run: the
        # remote does not exist), and its page.
        page.click("nav >> text=Replication")
        page.wait_for_load_state()
        page.fill("#name", "to-dr")
        page.select_option("#direction", "push")
        page.fill("#url", "https://dr.example")
        page.fill("#credentials", "robot:s3cret-pass")
        page.fill("#repositories", "alice/**")
        page.fill("#tags", "v*")
        page.check("#on_push")
        page.click("button:has-text('Create rule')")
        page.wait_for_load_state()
        check(page.url.endswith("/admin/replications/to-dr"), "the rule's page: " + page.url)
        check("s3cret" not in page.content(), "credentials are never shown")
        audit(page, "replication-rule")
        page.click("main a:has-text('Replication')")
        page.wait_for_load_state()
        check("to-dr" in page.inner_text("main"), "the rule is listed")
        audit(page, "replications")
        sign_out(page)

        # Bob, no member of alice's private namespace, does not see it.
        sign_in(page, BOB)
        page.goto(BASE + "/namespaces")
        check(page.locator("main a[href='/namespaces/alice']").count() == 0, "bob does not see alice")
        response = page.goto(BASE + "/namespaces/alice")
        check(response.status == 403, "bob refused: %d" % response.status)
        check("Not allowed" in page.inner_text("main"), "a refusal page")
        audit(page, "forbidden")
        response = page.goto(BASE + "/no/such/page")
        check(response.status == 404, "404: %d" % response.status)
        audit(page, "not-found")
        sign_out(page)

        browser.close()
    result["failures"] = failures
    print(json.dumps(result))


main()
