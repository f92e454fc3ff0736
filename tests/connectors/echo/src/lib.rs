//! The echo connector (`src/echo.rs`), run on every render: its `count`
//! reports its instance's own state, which the sandbox suites use to watch
//! warm and fresh instances, and `clock` shows it runs with real clocks.

mod echo;

keyward_guest::export_connector!(echo::Echo<true>);
