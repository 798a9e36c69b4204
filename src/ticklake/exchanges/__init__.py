"""Feed handlers: pure mappers (frame in, trades out) apart from the connections that feed them."""
