"""Policy simulation: recorded episodes' event streams re-applied, as they happened, under a
baseline and a candidate policy with the offline driver, and the two compared side by side."""
