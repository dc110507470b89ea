"""The Textual operations console. Only `console.commands` reaches in here (never engine/ or the
headless path), through `console.tui.launch`."""
