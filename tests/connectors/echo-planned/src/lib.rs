//! The echo connector (`../echo/src/echo.rs`) with its renders planned:
//! for the benchmarks and the render-plan tests.

#[path = "../../echo/src/echo.rs"]
mod echo;

keyward_guest::export_connector!(echo::Echo<false>);
