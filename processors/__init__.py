"""The stateful processors that run Everflow: workflow processor, activity runner, timers."""
