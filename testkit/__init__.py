"""What the test suite and the benchmarks share: contract-event builders (factories), real local
alert receivers (receivers) and polling without blind sleeps (waiting).

One package both import, so a benchmark never reaches into the test suite and a change to a
builder is made once. Nothing here is used by the service itself."""
