"""Hostile and unlucky requests against a real ``lookalike serve``: status, time and memory.

Each case runs against the server a user starts (waitress, real sockets, real PostgreSQL), so
what waitress buffers, how many connections it holds and how fast it answers are all measured.
"""

from __future__ import annotations

import pytest
import requests

from tests.images import noisy_jpeg
from tests.served import served_site

pytestmark = pytest.mark.usefixtures("database_url")

# The form is posted without a CSRF token: CSRF is tested elsewhere, uploads are tested here.
NO_CSRF = {"LOOKALIKE_WTF_CSRF_ENABLED": "false"}


@pytest.mark.parametrize("size", [(1600, 1200), (2048, 1536), (3000, 2000)])
def test_ordinary_noisy_photos_upload_on_every_endpoint(
    cli_env: dict[str, str], size: tuple[int, int]
) -> None:
    photo = noisy_jpeg(7, size)
    files = {"image": ("photo.jpg", photo, "image/jpeg")}
    with served_site(cli_env, extra_env=NO_CSRF) as site:
        search = requests.post(f"{site.url}/api/search", files=files, timeout=60)
        check = requests.post(f"{site.url}/api/check", files=files, timeout=60)
        form = requests.post(f"{site.url}/search", files=files, allow_redirects=False, timeout=60)
    assert len(photo) > 1_000_000
    assert search.status_code == 200, search.text
    assert search.json()["query"]["width"] == size[0]
    assert check.status_code == 200 and check.json()["flagged"] is False
    assert form.status_code == 303 and "/search?dhash=" in form.headers["Location"]


def test_text_fields_stay_capped_while_files_are_not(cli_env: dict[str, str]) -> None:
    long_url = "http://a.test/" + "x" * 100_000
    with served_site(cli_env, extra_env=NO_CSRF) as site:
        urlencoded = requests.post(f"{site.url}/search", data={"url": long_url}, timeout=30)
        multipart = requests.post(
            f"{site.url}/api/search", files={"url": (None, long_url)}, timeout=30
        )
    assert (urlencoded.status_code, multipart.status_code) == (413, 413)
