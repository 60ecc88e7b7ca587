"""`rtune <stage> --help` rendered by rich: usage, the stage's text, then its options in named panels."""

from __future__ import annotations

import click

DEFAULT_PANEL = "Options"
REQUIRED = "[required]"


class PanelCommand(click.Command):
    """A click command whose options carry a `panel` attribute (their group in --help, e.g. "BM25"); panels are
    shown in `panel_order`, then "Options"."""

    panel_order: list[str] = []

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from rich.console import Console
        from rich.panel import Panel
        from rich.table import Table
        from rich.text import Text

        console = Console(highlight=False)
        console.print(Text(self.get_usage(ctx), style="bold"))
        if self.help:
            console.print()
            console.print(Text(self.help))
        console.print()
        panels: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx) if isinstance(param, click.Option) else \
                (param.human_readable_name, getattr(param, "help", None) or "")
            if record is not None and not getattr(param, "hidden", False):
                name = DEFAULT_PANEL if isinstance(param, click.Option) else "Arguments"
                panels.setdefault(getattr(param, "panel", None) or name, []).append(record)
        order = ["Arguments", *self.panel_order, DEFAULT_PANEL]
        for title, records in sorted(panels.items(), key=lambda item: order.index(item[0]) if item[0] in order else len(order)):
            table = Table.grid(padding=(0, 2))
            table.add_column(style="bold cyan", no_wrap=True)
            table.add_column()
            for flags, help_text in records:
                text = Text(help_text.replace(REQUIRED, "").rstrip())
                if REQUIRED in help_text:
                    text.append(" " + REQUIRED, style="bold red")
                table.add_row(Text(flags), text)
            console.print(Panel(table, title=title, title_align="left", border_style="dim"))
