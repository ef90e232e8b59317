"""The rules, and only the rules: transactions, blocks, state, the lottery, genesis and the state
transition (``fork``). No database, clock, threads or sockets: what is valid is decided here."""
