"""The documentation pages work offline: /docs and /redoc load every asset from this
service, none from a CDN or any other host.

Method: the app on a memory store serves each page; an HTML parser collects every URL
the page makes the browser load (``src``, ``href``, the document URL in its script or
``spec-url``), and each must be a path on this service that answers 200. The CSS is
searched for ``url(...)`` too. A browser that runs the page is issue 18's test.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from infrastructure.settings import Settings

PAGES = ("/docs", "/redoc")
# The document URL is in the page's script (Swagger UI) or its ``spec-url`` (ReDoc).
SCRIPT_URL = re.compile(r"""\burl:\s*'([^']*)'""")
CSS_URL = re.compile(r"""url\(\s*["']?([^"')]+)""")


class AssetUrls(HTMLParser):
    """Every URL a browser would load for this page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "spec-url") and value is not None:
                self.urls.append(value)
        self.in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self.in_script = False

    def handle_data(self, data: str) -> None:
        if self.in_script:
            self.urls += SCRIPT_URL.findall(data)


def asset_urls(html: str) -> list[str]:
    parser = AssetUrls()
    parser.feed(html)
    return parser.urls


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(Settings(database_url="memory://"))) as client:
        yield client


@pytest.mark.parametrize("page", PAGES)
class TestDocsPages:
    def test_every_asset_the_page_loads_is_served_here(self, client: TestClient, page: str) -> None:
        response = client.get(page)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        urls = asset_urls(response.text)
        # A script, the document, and a favicon at least; the parser must see them.
        assert len(urls) >= 3, urls
        for url in urls:
            parts = urlsplit(url)
            assert not parts.scheme and not parts.netloc, f"{page} loads {url} from elsewhere"
            assert url.startswith("/"), url
            assert client.get(url).status_code == 200, url

    def test_the_page_names_no_other_host_at_all(self, client: TestClient, page: str) -> None:
        assert re.search(r"https?://|//cdn|fonts\.googleapis", client.get(page).text) is None


def test_the_swagger_css_loads_nothing_from_another_host(client: TestClient) -> None:
    css_urls = [url for url in asset_urls(client.get("/docs").text) if url.endswith(".css")]
    assert css_urls
    for css_url in css_urls:
        for url in CSS_URL.findall(client.get(css_url).text):
            assert url.startswith("data:") or not urlsplit(url).netloc, url


def test_the_swagger_ui_served_renders_openapi_3_1(client: TestClient) -> None:
    """Swagger UI 4 refuses 3.1 documents ("does not specify a valid version field"),
    which is what FastAPI writes: the bundle served must be Swagger UI 5 or later."""
    assert client.get("/openapi.json").json()["openapi"].startswith("3.1")
    scripts = [url for url in asset_urls(client.get("/docs").text) if url.endswith(".js")]
    (bundle,) = scripts
    version = re.search(r'PACKAGE_VERSION:"(\d+)\.', client.get(bundle).text)
    assert version is not None and int(version.group(1)) >= 5


def test_the_oauth2_redirect_page_swagger_ui_names_is_served(client: TestClient) -> None:
    assert "oauth2RedirectUrl" in client.get("/docs").text
    assert client.get("/docs/oauth2-redirect").status_code == 200


def test_an_asset_that_does_not_exist_is_a_404(client: TestClient) -> None:
    assert client.get("/docs/assets/no-such-file.js").status_code == 404
