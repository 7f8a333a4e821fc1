"""The actions benchmark's action package (loaded by path): a trivial async action and a
synchronous action that sleeps 50 ms."""
