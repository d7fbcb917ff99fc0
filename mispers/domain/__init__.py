"""Pure domain rules: no Temporal, no I/O, no clocks. Every function takes `now` explicitly."""
