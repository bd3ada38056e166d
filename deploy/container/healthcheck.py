"""Health check of a node in a container: exit 0 when its /health answers 200, else 1.

The image runs it as its HEALTHCHECK; an orchestrator without one (Kubernetes probes over HTTP
instead) can run it as an exec probe, which is the way to probe a node under mutual TLS. It reads
the node's settings as the node does (ARTEMIS_CONFIG, then ARTEMIS_* variables), so it asks the
port, context path and scheme the node serves, on the loopback address (or the one address the
node listens on). Under TLS it does not check the certificate's names (it talks to its own
container), and under mutual TLS it shows the node's own certificate, as peers do.
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.error
import urllib.request

from artemis.server.settings import Settings, SettingsError

TIMEOUT = 2.0  # seconds; the image's HEALTHCHECK allows 3


def health_url(settings: Settings) -> str:
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(settings.host,
                                                                      settings.host)
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if settings.tls_cert else "http"
    return f"{scheme}://{host}:{settings.port}{settings.context_path}/health"


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    if not settings.tls_cert:
        return None
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # our own node on loopback: names would not match
    if settings.tls_ca:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context


def main() -> int:
    try:
        settings = Settings.load(os.environ.get("ARTEMIS_CONFIG") or None, os.environ)
    except SettingsError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    url = health_url(settings)
    try:
        context = tls_context(settings)
        with urllib.request.urlopen(url, timeout=TIMEOUT, context=context) as answer:  # noqa: S310 - a URL we built, http(s) only
            body = answer.read().decode(errors="replace")
            status = answer.status
    except urllib.error.HTTPError as exc:
        body, status = exc.read().decode(errors="replace"), exc.code
    except (OSError, ValueError) as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    print(f"{url}: {status} {body}")
    return 0 if status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
