//! The fields Segment's spec defines, known to the schema before any data carries them: the
//! reserved traits of `identify` (<https://segment.com/docs/connections/spec/identify/#traits>),
//! the e-commerce events of the V2 spec with their properties
//! (<https://segment.com/docs/connections/spec/ecommerce/v2/>), the names non-track calls are
//! counted under (`$page`, …), and the events missive records itself (opens, clicks,
//! unsubscribes) and the traits it reads (`timezone`).
//!
//! A journey or segment written on day one, before the shop sent its first order, can name
//! `Order Completed` and `properties.total`; a typo of them is still refused.

use super::{FieldKey, FieldType};

use FieldType::{List, Number, Object, String as Str, Time};

/// Named fields with their types.
type Fields = &'static [(&'static str, FieldType)];

const TRAITS: Fields = &[
    ("address", Object),
    ("age", Number),
    ("avatar", Str),
    ("birthday", Time),
    ("company", Object),
    ("createdAt", Time),
    ("description", Str),
    ("email", Str),
    ("firstName", Str),
    ("gender", Str),
    ("id", Str),
    ("lastName", Str),
    ("name", Str),
    ("phone", Str),
    ("title", Str),
    ("username", Str),
    ("website", Str),
    // Read by missive: quiet hours, waits until a local time and the `date` filter.
    ("timezone", Str),
];

/// The properties of one product in the spec.
const PRODUCT: Fields = &[
    ("product_id", Str),
    ("sku", Str),
    ("category", Str),
    ("name", Str),
    ("brand", Str),
    ("variant", Str),
    ("price", Number),
    ("quantity", Number),
    ("coupon", Str),
    ("position", Number),
    ("url", Str),
    ("image_url", Str),
];

const ORDER: Fields = &[
    ("checkout_id", Str),
    ("order_id", Str),
    ("affiliation", Str),
    ("subtotal", Number),
    ("total", Number),
    ("revenue", Number),
    ("value", Number),
    ("shipping", Number),
    ("tax", Number),
    ("discount", Number),
    ("coupon", Str),
    ("currency", Str),
    ("products", List),
];

const CART: Fields = &[("cart_id", Str)];
const PRODUCTS: Fields = &[("products", List)];
const LIST: Fields = &[("list_id", Str), ("category", Str), ("products", List)];
const FILTERED: Fields = &[("filters", List), ("sorts", List)];
const PROMOTION: Fields = &[
    ("promotion_id", Str),
    ("creative", Str),
    ("name", Str),
    ("position", Str),
];
const CHECKOUT_STEP: Fields = &[
    ("checkout_id", Str),
    ("order_id", Str),
    ("step", Number),
    ("shipping_method", Str),
    ("payment_method", Str),
];
const COUPON: Fields = &[
    ("order_id", Str),
    ("cart_id", Str),
    ("coupon_id", Str),
    ("coupon_name", Str),
    ("discount", Number),
    ("reason", Str),
];
const WISHLIST: Fields = &[("wishlist_id", Str), ("wishlist_name", Str)];
const SHARED: Fields = &[("share_via", Str), ("share_message", Str), ("recipient", Str)];
const REVIEW: Fields = &[("review_id", Str), ("review_body", Str), ("rating", Number)];
const CURRENCY: Fields = &[("currency", Str), ("value", Number)];
const MESSAGE: Fields = &[("message_id", Str), ("template", Str), ("source", Str)];
const CLICK: Fields = &[("url", Str)];
const NONE: Fields = &[];

/// Each event with the groups of properties it carries.
const EVENTS: &[(&str, &[Fields])] = &[
    ("Products Searched", &[&[("query", Str)]]),
    ("Product List Viewed", &[LIST]),
    ("Product List Filtered", &[LIST, FILTERED]),
    ("Promotion Viewed", &[PROMOTION]),
    ("Promotion Clicked", &[PROMOTION]),
    ("Product Clicked", &[PRODUCT]),
    ("Product Viewed", &[PRODUCT, CURRENCY]),
    ("Product Added", &[PRODUCT, CART]),
    ("Product Removed", &[PRODUCT, CART]),
    ("Cart Viewed", &[CART, PRODUCTS]),
    ("Checkout Started", &[ORDER]),
    ("Checkout Step Viewed", &[CHECKOUT_STEP]),
    ("Checkout Step Completed", &[CHECKOUT_STEP]),
    ("Payment Info Entered", &[CHECKOUT_STEP]),
    ("Order Updated", &[ORDER]),
    ("Order Completed", &[ORDER]),
    ("Order Refunded", &[ORDER]),
    ("Order Cancelled", &[ORDER]),
    ("Coupon Entered", &[COUPON]),
    ("Coupon Applied", &[COUPON]),
    ("Coupon Denied", &[COUPON]),
    ("Coupon Removed", &[COUPON]),
    ("Product Added to Wishlist", &[PRODUCT, WISHLIST]),
    ("Product Removed from Wishlist", &[PRODUCT, WISHLIST]),
    ("Wishlist Product Added to Cart", &[PRODUCT, WISHLIST, CART]),
    ("Product Shared", &[PRODUCT, SHARED]),
    ("Cart Shared", &[CART, PRODUCTS, SHARED]),
    ("Product Reviewed", &[&[("product_id", Str)], REVIEW]),
    // Recorded by missive.
    ("Email Delivered", &[MESSAGE]),
    ("Email Opened", &[MESSAGE]),
    ("Email Link Clicked", &[MESSAGE, CLICK]),
    ("Unsubscribed", &[&[("message_id", Str)]]),
    ("Email Marked as Spam", &[&[("message_id", Str)]]),
    (
        "Experiment Viewed",
        &[&[
            ("experiment_id", Str),
            ("experiment_name", Str),
            ("variation_id", Str),
            ("variation_name", Str),
            ("message_id", Str),
            ("source", Str),
            ("holdout", FieldType::Bool),
        ]],
    ),
    // The names the other calls are counted under.
    ("$identify", &[NONE]),
    ("$page", &[NONE]),
    ("$screen", &[NONE]),
    ("$group", &[NONE]),
    ("$alias", &[NONE]),
];

/// Every field the spec defines, with its type (`None` for an event name).
pub fn fields() -> impl Iterator<Item = (FieldKey, Option<FieldType>)> {
    let traits = TRAITS.iter().map(|(n, t)| (FieldKey::trait_(*n), Some(*t)));
    let events = EVENTS.iter().flat_map(|(event, groups)| {
        std::iter::once((FieldKey::event(*event), None)).chain(
            groups
                .iter()
                .flat_map(|g| g.iter())
                .map(move |(n, t)| (FieldKey::property(*event, *n), Some(*t))),
        )
    });
    traits.chain(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A property listed twice for one event (by two groups) has one type.
    #[test]
    fn no_field_is_defined_twice_with_two_types() {
        let mut seen: HashMap<FieldKey, Option<FieldType>> = HashMap::new();
        for (k, t) in fields() {
            if let Some(before) = seen.insert(k.clone(), t) {
                assert_eq!(before, t, "{k:?}");
            }
        }
        assert!(seen.contains_key(&FieldKey::property("Order Completed", "total")));
        assert!(seen.contains_key(&FieldKey::property("Product Added", "cart_id")));
        assert!(seen.contains_key(&FieldKey::event("$page")));
    }
}
