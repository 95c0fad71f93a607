"""Form parsing that caps text fields, never files, at ``MAX_FORM_MEMORY_SIZE``.

Werkzeug's multipart decoder refuses whenever its buffer (one read of the body plus the tail it
keeps in case a boundary starts there) would pass ``max_form_memory_size``, whatever the part: a
file part whose read ended near a CR or LF tipped it over, so ordinary photos got 413 when the
read size was the limit. Reading in chunks of a quarter of the limit leaves that check to what it
is for (a preamble or part headers that never end); MultiPartParser itself still counts every text
field against the limit. Werkzeug 3.1.9 stopped capping urlencoded bodies; the cap is put back,
and JSON bodies, which carry no files either, get the same cap.
"""

from __future__ import annotations

import io
from typing import IO, TYPE_CHECKING

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser, MultiPartParser

if TYPE_CHECKING:
    from werkzeug.formparser import t_parse_result

# Body bytes read per step, as a share of MAX_FORM_MEMORY_SIZE: the rest of the buffer is room
# for the partial-boundary tail (at most the boundary's length plus CR LF --).
READS_PER_FORM_MEMORY = 4


class TextCappedFormDataParser(FormDataParser):
    def _parse_multipart(
        self,
        stream: IO[bytes],
        mimetype: str,
        content_length: int | None,
        options: dict[str, str],
    ) -> t_parse_result:
        if self.max_form_memory_size is None:
            return super()._parse_multipart(stream, mimetype, content_length, options)
        parser = MultiPartParser(
            stream_factory=self.stream_factory,
            max_form_memory_size=self.max_form_memory_size,
            max_form_parts=self.max_form_parts,
            cls=self.cls,
            buffer_size=max(1, self.max_form_memory_size // READS_PER_FORM_MEMORY),
        )
        boundary = options.get("boundary", "").encode("ascii")
        if not boundary:
            raise ValueError("Missing boundary")
        form, files = parser.parse(stream, boundary, content_length)
        return stream, form, files

    def parse(
        self,
        stream: IO[bytes],
        mimetype: str,
        content_length: int | None,
        options: dict[str, str] | None = None,
    ) -> t_parse_result:
        if mimetype == "application/x-www-form-urlencoded" and self.max_form_memory_size:
            stream = _read_at_most(stream, self.max_form_memory_size)
        return super().parse(stream, mimetype, content_length, options)


def _read_at_most(stream: IO[bytes], limit: int) -> IO[bytes]:
    """The whole of ``stream`` if it holds at most ``limit`` bytes, else 413."""
    body = stream.read(limit + 1)
    if len(body) > limit:
        raise RequestEntityTooLarge(f"form fields are limited to {limit:,} bytes")
    return io.BytesIO(body)


class SiteRequest(Request):
    form_data_parser_class = TextCappedFormDataParser

    @property
    def max_content_length(self) -> int | None:
        """A JSON body holds only text fields, so it is capped like them: a 20 MB body of
        ``[{},{},…]`` would cost a gigabyte to parse. Werkzeug answers 413 past this.
        """
        if self.is_json:
            return self.max_form_memory_size
        return super().max_content_length
