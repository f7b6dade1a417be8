"""The package's own tests run against a real `eventual sink`: the plugin's `eventual_sink`
fixture starts a private one (EVENTUAL_BIN names the binary, e.g. target/debug/eventual).
`pytester` runs inner pytest sessions in subprocesses for the plugin's own behaviour."""

pytest_plugins = ["pytester"]
