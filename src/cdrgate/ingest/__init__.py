"""Every way CDRs come in, in one package: files (``files``, in the formats of ``formats``),
files followed as they grow (``follow``), NewCdr pushes (``push``, ``newcdr``), generated
samples (``seeding``) and records already in hand, such as a sync's (``store``).

Each source maps its input onto :class:`cdrgate.cdr.CdrRecord` with the value rules of
``cdr`` (one duration range, one NUL rule, one header test) and stores it through
:class:`cdrgate.storage.cdrs.Inserter`, the one way rows go in.
"""
