"""Click groups whose extra commands come from entry points.

The crawler and the site register commands (``crawl``, ``serve``, ``bench crawl``…) under an
entry-point group, so the core lists and runs them without importing Scrapy or Flask itself.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any

import click


class PluginGroup(click.Group):
    """A click group that also offers the commands registered under ``plugin_group``."""

    def __init__(self, *args: Any, plugin_group: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.plugin_group = plugin_group

    def _plugins(self) -> dict[str, EntryPoint]:
        return {ep.name: ep for ep in entry_points(group=self.plugin_group)}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._plugins()})

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List each command with its whole first sentence, wrapped rather than cut with '…'."""
        commands = [(name, self.get_command(ctx, name)) for name in self.list_commands(ctx)]
        rows = [
            (name, command.get_short_help_str(limit=1_000))
            for name, command in commands
            if command is not None and not command.hidden
        ]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        plugin = self._plugins().get(cmd_name)
        if command is None and plugin is not None:
            command = plugin.load()
        return command
