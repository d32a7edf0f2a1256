//! Builder setters that only store their argument, written once for every options type.

/// `setters! { /// docs
/// name: Type, ... }` makes `pub fn name(mut self, value: Type) -> Self` for each field.
macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty),* $(,)?) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, value: $ty) -> Self {
                self.$name = value;
                self
            }
        )*
    };
}
