// replaced by the data layer
