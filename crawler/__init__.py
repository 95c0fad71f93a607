"""Lookalike's crawler: a Scrapy project that records every image sighting in PostgreSQL."""
