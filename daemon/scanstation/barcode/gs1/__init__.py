"""GS1 rules the interpreter adds to biip: the Syntax Dictionary, its content checks, the engine."""
