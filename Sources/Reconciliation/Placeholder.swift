/// Placeholder.
enum ReconciliationPlaceholder {}
