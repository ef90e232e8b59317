"""The attack lab behind ``posctl lab``: classic PoS attacks run against a labelled naive model
(:mod:`cli.lab.naive`) and against posctl's real consensus code on a throwaway in-memory chain."""
