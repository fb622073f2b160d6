"""The core: what network (`architectures`), its parameters (`params`, `packed`), the checks at the boundary
(`validate`, `files`, `memory`), the algorithms on any backend (`api`, `training`, `trainer`, `predict`), result
folders (`results`) and Grams beyond memory on Dask workers (`gram`, `clusters`). The paper's studies live in
`deepntk.engine.experiments`."""
