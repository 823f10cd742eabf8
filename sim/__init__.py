"""orrery's simulation core (engine, scenarios, domain registry) and one simulator per domain."""
