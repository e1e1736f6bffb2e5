//! The demo's fashion catalogue: styles with sizes, colours, prices, categories, stock,
//! descriptions and a picture (an SVG drawn here, as a data URL: nothing is fetched). Pure and
//! seeded: the same seed gives the same catalogue.

use missive_content::recs::{Product, Variant};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

/// A category: its name, price range (major units), sizes, a garment word per style, and the
/// shape drawn for it.
struct Category {
    name: &'static str,
    price: (f64, f64),
    sizes: &'static [&'static str],
    nouns: &'static [&'static str],
    shape: &'static str,
}

const CATEGORIES: &[Category] = &[
    Category {
        name: "dresses",
        price: (39.0, 189.0),
        sizes: &["XS", "S", "M", "L", "XL"],
        nouns: &[
            "Wrap Dress",
            "Midi Dress",
            "Slip Dress",
            "Shirt Dress",
            "Maxi Dress",
        ],
        shape: "M40 20 L60 20 L66 40 L80 100 L20 100 L34 40 Z",
    },
    Category {
        name: "tops",
        price: (19.0, 79.0),
        sizes: &["XS", "S", "M", "L", "XL"],
        nouns: &[
            "Linen Shirt",
            "Silk Blouse",
            "Rib Tee",
            "Cropped Cardigan",
            "Tank",
        ],
        shape: "M30 25 L45 20 L55 20 L70 25 L82 45 L70 50 L68 95 L32 95 L30 50 L18 45 Z",
    },
    Category {
        name: "knitwear",
        price: (45.0, 160.0),
        sizes: &["XS", "S", "M", "L", "XL"],
        nouns: &["Merino Jumper", "Cashmere Crew", "Cable Knit", "Chunky Cardigan"],
        shape: "M28 25 L45 18 L55 18 L72 25 L86 70 L74 74 L68 50 L68 98 L32 98 L32 50 L26 74 L14 70 Z",
    },
    Category {
        name: "trousers",
        price: (35.0, 129.0),
        sizes: &["24", "26", "28", "30", "32", "34"],
        nouns: &[
            "Wide-Leg Trousers",
            "Straight Jeans",
            "Cargo Pants",
            "Tailored Trousers",
        ],
        shape: "M32 15 L68 15 L72 100 L56 100 L50 45 L44 100 L28 100 Z",
    },
    Category {
        name: "outerwear",
        price: (89.0, 349.0),
        sizes: &["XS", "S", "M", "L", "XL"],
        nouns: &[
            "Trench Coat",
            "Wool Coat",
            "Puffer Jacket",
            "Denim Jacket",
            "Blazer",
        ],
        shape: "M28 20 L44 14 L50 30 L56 14 L72 20 L84 80 L72 82 L70 100 L30 100 L28 82 L16 80 Z",
    },
    Category {
        name: "shoes",
        price: (49.0, 219.0),
        sizes: &["36", "37", "38", "39", "40", "41", "42"],
        nouns: &[
            "Leather Loafers",
            "Canvas Sneakers",
            "Ankle Boots",
            "Strappy Sandals",
        ],
        shape: "M15 60 L45 60 L55 45 L70 48 L85 70 L85 80 L15 80 Z",
    },
    Category {
        name: "accessories",
        price: (15.0, 149.0),
        sizes: &["One size"],
        nouns: &[
            "Leather Belt",
            "Silk Scarf",
            "Tote Bag",
            "Bucket Hat",
            "Crossbody Bag",
        ],
        shape: "M25 40 L75 40 L80 90 L20 90 Z M38 40 Q50 15 62 40",
    },
];

const COLOURS: &[(&str, &str)] = &[
    ("black", "#1f2328"),
    ("ivory", "#efe8da"),
    ("navy", "#23395d"),
    ("camel", "#c19a6b"),
    ("sage", "#9caf88"),
    ("rust", "#b7410e"),
    ("blush", "#e8b4b8"),
    ("cobalt", "#2e5cb8"),
    ("olive", "#6b6b2a"),
    ("grey", "#8a8f98"),
];

const LINES: &[&str] = &[
    "Atelier", "Nord", "Solstice", "Harbour", "Meadow", "Linea", "Verso", "Kite", "Ember", "Tidal",
];

const FABRICS: &[&str] = &[
    "organic cotton",
    "linen",
    "merino wool",
    "recycled polyester",
    "silk",
    "denim",
    "leather",
    "cashmere blend",
    "viscose",
];

/// The category names, in the catalogue's order.
pub fn categories() -> Vec<&'static str> {
    CATEGORIES.iter().map(|c| c.name).collect()
}

/// A small picture of the garment in its colour, as an SVG data URL.
fn picture(shape: &str, fill: &str) -> String {
    let svg = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 100 110'><rect width='100' height='110' fill='#f4f1ec'/>\
         <path d='{shape}' fill='{fill}' stroke='#00000033' stroke-width='1.5'/></svg>"
    );
    format!(
        "data:image/svg+xml;utf8,{}",
        percent_encoding::utf8_percent_encode(&svg, percent_encoding::NON_ALPHANUMERIC)
    )
}

/// `styles` styles, spread over the categories; about one variant in twelve is out of stock,
/// and a few whole styles are.
pub fn catalogue(seed: u64, styles: usize) -> Vec<Product> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xca7a_1090);
    (0..styles)
        .map(|i| {
            let cat = &CATEGORIES[i % CATEGORIES.len()];
            let noun = cat.nouns[rng.random_range(0..cat.nouns.len())];
            let line = LINES[rng.random_range(0..LINES.len())];
            let fabric = FABRICS[rng.random_range(0..FABRICS.len())];
            let price = (rng.random_range(cat.price.0..cat.price.1) / 5.0).round() * 5.0 - 0.05;
            let n_colours = rng.random_range(1..=3);
            let first = rng.random_range(0..COLOURS.len());
            let colours: Vec<_> = (0..n_colours)
                .map(|k| COLOURS[(first + k * 3) % COLOURS.len()])
                .collect();
            let id = format!("st-{:04}", i + 1);
            let gone = rng.random_bool(0.03);
            let variants: Vec<Variant> = colours
                .iter()
                .flat_map(|(colour, _)| cat.sizes.iter().map(move |size| (*colour, *size)))
                .map(|(colour, size)| Variant {
                    sku: format!("{id}-{colour}-{size}").replace(' ', "-").to_lowercase(),
                    size: Some(size.to_owned()),
                    colour: Some(colour.to_string()),
                    in_stock: !gone && !rng.random_bool(1.0 / 12.0),
                })
                .collect();
            let title = format!("{line} {noun}");
            Product {
                id: id.clone(),
                title: title.clone(),
                url: Some(format!("https://shop.example/p/{id}")),
                image_url: Some(picture(cat.shape, colours[0].1)),
                price: Some(price),
                currency: Some("EUR".into()),
                categories: vec![cat.name.to_owned()],
                brand: Some(line.to_owned()),
                in_stock: !gone,
                variants,
                margin: Some(rng.random_range(0.35..0.65)),
                attributes: json!({
                    "description": format!("The {title} in {fabric}: {} cut, made to last.",
                        ["relaxed", "tailored", "easy", "classic"][rng.random_range(0..4)]),
                    "fabric": fabric,
                    "new_in": rng.random_bool(0.15),
                })
                .as_object()
                .cloned()
                .unwrap_or_default(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_is_valid_varied_and_repeatable() {
        let a = catalogue(7, 350);
        assert_eq!(a.len(), 350);
        assert_eq!(a, catalogue(7, 350), "same seed, same catalogue");
        for p in &a {
            p.validate().unwrap_or_else(|e| panic!("{}: {e}", p.id));
            assert!(
                p.image_url
                    .as_deref()
                    .unwrap()
                    .starts_with("data:image/svg+xml;utf8,")
            );
            assert!(!p.variants.is_empty());
        }
        let cats: std::collections::BTreeSet<_> = a.iter().map(|p| p.categories[0].clone()).collect();
        assert_eq!(cats.len(), CATEGORIES.len());
        let out = a.iter().flat_map(|p| &p.variants).filter(|v| !v.in_stock).count();
        let all = a.iter().map(|p| p.variants.len()).sum::<usize>();
        assert!(
            out * 30 > all && out * 5 < all,
            "{out} of {all} variants out of stock"
        );
    }
}
