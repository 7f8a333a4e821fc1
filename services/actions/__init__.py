"""The actions service: runs the user's rasa-sdk action package in process.

`registry` loads the package, `executor` runs one action call, `worker` answers `parley.actions`
with `ActionResult`s, `http` serves Rasa's action server webhook, `worker_cli` wires them.
"""
