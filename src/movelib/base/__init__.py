"""The base, said once and used everywhere: errors, text, defaults, options, prompts, files."""
