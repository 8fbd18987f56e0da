"""`python -m drivers.codecs.serial_protocol 'PAYLOAD' ...`: frame lines for a terminal."""
from drivers.codecs.serial_protocol.framing import main

raise SystemExit(main())
