"""Operations: metrics and logging. Cross-cutting: imports nothing from the data flow."""
