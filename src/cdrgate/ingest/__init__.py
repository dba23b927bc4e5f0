"""Getting CDRs in from the systems people run: NewCdr pushes, Asterisk and FreeSWITCH CSV,
and files followed as they grow. Everything here maps onto :class:`cdrgate.cdr.CdrRecord`."""
