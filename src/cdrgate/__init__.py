"""cdrgate: the Yeastar S-Series CDR download API, as a server, a client SDK and a CLI."""

__version__ = "0.1.0"
