//! The product catalogue and what sold: products, popularity (best sellers), the products an
//! event names.

use super::*;

impl ContentService {
    /// Saves products (creating or replacing each by id). Invalid ones are listed and the
    /// rest saved.
    pub async fn put_products(
        &self,
        products: Vec<serde_json::Value>,
        now: DateTime<Utc>,
    ) -> Result<(usize, Vec<RejectedProduct>), ContentServiceError> {
        let mut docs = Vec::with_capacity(products.len());
        let mut rejected = Vec::new();
        for (index, raw) in products.into_iter().enumerate() {
            let id = raw.get("id").and_then(|v| v.as_str()).map(str::to_string);
            let parsed = serde_json::from_value::<Product>(raw)
                .map_err(|e| e.to_string())
                .and_then(|p| p.validate().map(|()| p).map_err(|e| e.to_string()));
            match parsed {
                Ok(p) => {
                    let body = serde_json::to_value(&p)
                        .map_err(|e| ContentServiceError::Corrupt("product", e.to_string()))?;
                    docs.push(DocumentRecord {
                        kind: DocumentKind::Product,
                        name: p.id,
                        version: 0,
                        body,
                        updated_at: now,
                    });
                }
                Err(reason) => rejected.push(RejectedProduct { index, id, reason }),
            }
        }
        let saved = docs.len();
        if !docs.is_empty() {
            self.store.documents().put_documents(docs).await?;
            self.invalidate();
        }
        Ok((saved, rejected))
    }

    pub async fn product(&self, id: &str) -> Result<Product, ContentServiceError> {
        let doc = self
            .store
            .documents()
            .get_document(DocumentKind::Product, id)
            .await?
            .ok_or_else(|| ContentServiceError::NotFound {
                kind: "product",
                name: id.to_string(),
            })?;
        serde_json::from_value(doc.body).map_err(|e| ContentServiceError::Corrupt("product", e.to_string()))
    }

    pub async fn list_products(
        &self,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<Product>, ContentServiceError> {
        self.store
            .documents()
            .list_documents(DocumentKind::Product, after, limit)
            .await?
            .into_iter()
            .map(|d| {
                serde_json::from_value(d.body)
                    .map_err(|e| ContentServiceError::Corrupt("product", e.to_string()))
            })
            .collect()
    }

    pub async fn delete_product(&self, id: &str) -> Result<(), ContentServiceError> {
        if !self
            .store
            .documents()
            .delete_document(DocumentKind::Product, id)
            .await?
        {
            return Err(ContentServiceError::NotFound {
                kind: "product",
                name: id.to_string(),
            });
        }
        self.invalidate();
        Ok(())
    }

    /// The catalogue as last loaded, however old; loaded only when there is none. For the
    /// click redirect, which must not wait for a reload.
    pub async fn catalog_as_cached(&self) -> Result<Arc<Catalog>, ContentServiceError> {
        let cached = self.cache().catalog.as_ref().map(|(_, c)| c.clone());
        match cached {
            Some(c) => Ok(c),
            None => self.catalog().await,
        }
    }

    pub async fn catalog(&self) -> Result<Arc<Catalog>, ContentServiceError> {
        let generation = {
            let c = self.cache();
            if let Some((at, catalog)) = &c.catalog
                && at.elapsed() < CACHE_TTL
            {
                return Ok(catalog.clone());
            }
            c.generation
        };
        let mut products = Vec::new();
        let mut after = None;
        loop {
            let page = self.list_products(after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            products.extend(page);
        }
        let catalog = Arc::new(Catalog::new(products));
        let mut c = self.cache();
        if c.generation == generation {
            c.catalog = Some((Instant::now(), catalog.clone()));
        }
        Ok(catalog)
    }

    /// Recent sales, ranked. Brought up to date from the events committed since the last
    /// time, at most once per refresh period; one computation at a time.
    pub async fn popularity(&self, now: DateTime<Utc>) -> Result<Arc<Popularity>, ContentServiceError> {
        let fresh = |c: &Cached| {
            c.popularity
                .as_ref()
                .filter(|(at, _)| at.elapsed() < self.config.popularity_refresh)
                .map(|(_, p)| p.clone())
        };
        if let Some(p) = fresh(&self.cache()) {
            return Ok(p);
        }
        let mut sales = self.sales.lock().await;
        // Someone else may have finished while this waited.
        if let Some(p) = fresh(&self.cache()) {
            return Ok(p);
        }
        let half_life = self.config.sales_half_life;
        let since = now - self.config.sales_window;
        let state = sales.get_or_insert_with(|| SalesState {
            popularity: Popularity::new(since, half_life),
            through_seq: 0,
        });
        let mut popularity = state.popularity.clone();
        let mut through = state.through_seq;
        let mut new_sales = Vec::new();
        loop {
            let page = self
                .store
                .events()
                .track_events_since(self.config.purchase_events.clone(), since, through, 5_000)
                .await?;
            let Some(last) = page.last() else { break };
            through = last.seq;
            for e in &page {
                let at = e.timestamp;
                for (id, quantity) in purchased_products(&e.body["properties"]) {
                    new_sales.push((id, quantity, at));
                }
            }
        }
        popularity.advance(now);
        for (id, quantity, at) in new_sales {
            popularity.add(id, quantity, at);
        }
        popularity.rank();
        *state = SalesState {
            popularity: popularity.clone(),
            through_seq: through,
        };
        let popularity = Arc::new(popularity);
        self.cache().popularity = Some((Instant::now(), popularity.clone()));
        Ok(popularity)
    }

    /// Forgets the best-seller ranking so the next request recomputes it.
    pub fn refresh_popularity(&self) {
        self.cache().popularity = None;
    }
}

/// Product ids in an e-commerce event: `products[].product_id` (or `sku`, `id`), or a single
/// `product_id`.
pub fn event_products(properties: &serde_json::Map<String, serde_json::Value>) -> Vec<String> {
    purchased_products(&serde_json::Value::Object(properties.clone()))
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

/// (product id, quantity) for each product in an e-commerce event's properties.
pub(super) fn purchased_products(properties: &serde_json::Value) -> Vec<(String, f64)> {
    let id_of = |p: &serde_json::Value| {
        ["product_id", "sku", "id"].iter().find_map(|k| match &p[*k] {
            serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    };
    let quantity = |p: &serde_json::Value| p["quantity"].as_f64().filter(|q| *q > 0.0).unwrap_or(1.0);
    match properties["products"].as_array() {
        Some(items) => items
            .iter()
            .filter_map(|p| id_of(p).map(|id| (id, quantity(p))))
            .collect(),
        None => id_of(properties)
            .map(|id| vec![(id, quantity(properties))])
            .unwrap_or_default(),
    }
}
