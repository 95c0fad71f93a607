"""Spiders of the Lookalike crawler (one: ``site``)."""
