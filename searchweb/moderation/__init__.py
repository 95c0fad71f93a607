"""Moderation banks on the site: a public check for upload pipelines, keyed writes, moderator pages.

Anyone may ``POST /api/check`` and learn only whether an image matches, and for each match the
bank's name, the reason and when it was flagged: nothing about an entry it does not match, and
no distance (it would lead a stranger to the entry's exact dHash). With a moderator key the check
also tells each match's entry and distance and takes ``max_distance``. Everything else (flagging,
disabling, listing a bank, the pages) needs a moderator key: sent as ``Authorization: Bearer
KEY`` to the API, or typed once into the login form for the pages. Keys are configured as
SHA-256 digests (``MODERATOR_KEYS = {"name": "<hex digest>"}``), so the configuration holds no
usable secret; ``lookalike moderator-key NAME`` makes a key and its digest.

One blueprint per concern: ``check`` (the public check), ``api`` (the keyed JSON API), ``pages``
(the moderator pages), ``auth`` (keys, sessions and sign-in, which the others require);
``banks`` holds what they share.
"""

from __future__ import annotations

from searchweb.moderation import api, auth, check, pages

BLUEPRINTS = (auth.bp, check.bp, api.bp, pages.bp)
