CREATE DATABASE IF NOT EXISTS {database:Identifier} ENGINE = Atomic;
