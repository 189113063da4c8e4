"""Which database and how to reach it: targets, emulators, connections, migrations."""
