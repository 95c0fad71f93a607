"""The robust path: finding copies that were mirrored, turned, cropped, framed or captioned.

Global hashes (:mod:`lookalike.kinds`) find copies whose pixels barely moved. This package finds
the rest, in two ways that share one answer, :class:`~lookalike.features.relation.Relation`
(how a match differs from the query):

- :mod:`~lookalike.features.views`: the query's global hashes taken again on its mirrored and
  turned pixels and with its border trimmed, each searched exactly like the plain hash;
- :mod:`~lookalike.features.orb`: ORB local features, stored per image in PostgreSQL;
  :mod:`~lookalike.features.index` retrieves candidates from an in-memory index derived from
  them, and :mod:`~lookalike.features.verify` keeps only candidates a geometric fit confirms.
"""
